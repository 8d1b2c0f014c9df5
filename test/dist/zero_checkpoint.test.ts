// Sharded checkpoints outlive the world size and the stage: 4 ranks at ZeRO-2 (small buckets, so
// every rank's shard holds pieces of many parameters) save at step 3; 2 ranks at ZeRO-1 and one
// plain process resume from it (same global batch: micro-batch × accumulation × world = 8) and
// their steps 4-6 equal an uninterrupted 1-rank run's within float32 reduction-order tolerance:
// the AdamW moments, the masters, the data position and the step came back right, or the losses
// would part. `kestrel consolidate` turns the checkpoint into an HF folder whose weights equal the
// model the ranks held (the masters were gathered into it).
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { assertClose, runCli, tinyTrainDir } from '../helpers.js';
import { train, weights } from './train_runs.js';

test('save on 4 ranks at ZeRO-2, resume on 2 ranks at ZeRO-1 and on 1 rank: the curve continues; consolidate gives the weights', async () => {
  const dir = tinyTrainDir('kestrel-zero-ckpt-');
  writeFileSync(join(dir, 'ds.json'), JSON.stringify({ zero_optimization: { stage: 2, reduce_bucket_size: 200 } }));
  const common = ['--schedule', 'constant', '--lr', '0.01'];
  const full = train(dir, 'full', [...common, '--grad-accum', '4', '--max-steps', '6']);
  train(dir, 'saved', [...common, '--nproc', '4', '--deepspeed', join(dir, 'ds.json'), '--save-every', '3']);
  const ckpt = join(dir, 'saved', 'checkpoint-3');
  const manifest = JSON.parse(readFileSync(join(ckpt, 'zero_manifest.json'), 'utf8')) as { world_size: number; stage: number };
  assert.deepEqual([manifest.world_size, manifest.stage], [4, 2]);
  for (let r = 0; r < 4; r++) assert.ok(existsSync(join(ckpt, `optimizer-rank${r}.safetensors`)), `rank ${r}'s shard`);

  for (const [out, flags] of [['two', ['--nproc', '2', '--zero-stage', '1', '--grad-accum', '2']], ['one', ['--grad-accum', '4']]] as const) {
    const resumed = train(dir, out, [...common, ...flags, '--max-steps', '6', '--resume', ckpt]);
    assertClose(resumed.losses, full.losses.slice(3), { atol: 0, rtol: 2e-5, what: `${out}: losses of steps 4-6` });
    const [a, b] = [weights(join(dir, out, 'model.safetensors')), weights(join(dir, 'full', 'model.safetensors'))];
    for (const [name, v] of a) assertClose(v, b.get(name)!, { atol: 2e-5, rtol: 1e-4, what: `${out}: ${name}` });
  }

  const r = runCli(['consolidate', ckpt, '--out', join(dir, 'fp32')]);
  assert.equal(r.status, 0, r.stderr);
  const gathered = weights(join(ckpt, 'model.safetensors')); // rank 0's parameters at step 3
  const { model } = await k.loadPretrained(join(dir, 'fp32'));
  const loaded = new Map(model.namedParameters());
  assert.deepEqual([...loaded.keys()].sort(), [...gathered.keys()].sort());
  for (const [name, v] of gathered) assertClose(loaded.get(name)!, v, { atol: 0, rtol: 0, what: `consolidated ${name}` });
  model.dispose();
});
