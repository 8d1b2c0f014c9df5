// A plain checkpoint (one process: optimizer.safetensors per parameter) resumes under ZeRO-2 on 2
// ranks: each rank cuts its shards' pieces (masters and AdamW's moments) out of the whole
// parameters, and steps 4-6 equal the uninterrupted run's within float32 reduction-order
// tolerance (the same global batch: 2 micro-batches per step either way).
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { assertClose, tinyTrainDir } from '../helpers.js';
import { train, weights } from './train_runs.js';

test('a 1-rank checkpoint resumes on 2 ranks at ZeRO-2 and the curve continues', () => {
  const dir = tinyTrainDir('kestrel-zero-plain-');
  writeFileSync(join(dir, 'ds.json'), JSON.stringify({ zero_optimization: { stage: 2, reduce_bucket_size: 200 } }));
  const common = ['--schedule', 'constant', '--lr', '0.01', '--max-steps', '6'];
  const full = train(dir, 'full', [...common, '--grad-accum', '2', '--save-every', '3']);
  const ckpt = join(dir, 'full', 'checkpoint-3');
  assert.ok(existsSync(join(ckpt, 'optimizer.safetensors')) && !existsSync(join(ckpt, 'zero_manifest.json')), 'a plain checkpoint');
  const resumed = train(dir, 'two', [...common, '--nproc', '2', '--deepspeed', join(dir, 'ds.json'), '--resume', ckpt]);
  assertClose(resumed.losses, full.losses.slice(3), { atol: 0, rtol: 2e-5, what: 'losses of steps 4-6' });
  const [a, b] = [weights(join(dir, 'two', 'model.safetensors')), weights(join(dir, 'full', 'model.safetensors'))];
  for (const [name, v] of a) assertClose(v, b.get(name)!, { atol: 2e-5, rtol: 1e-4, what: name });
});
