// ZeRO stage 2 on 4 ranks (bf16 autocast, a 4-layer tiny llama, 600-element reduce buckets): the
// same run as 1 rank × grad-accum 4, and each rank's k.memory peaks show what stage 2 partitions.
// 1 rank holds every float32 gradient at once (Ψ·4 bytes) and AdamW's two moments (2·Ψ·4); a
// stage-2 rank holds its quarter of each (plus each bucket's padding: on one machine each rank's
// slice is whole 64-byte lines, < 16 elements more), the bucket being reduced, the bucket filling
// and the one parameter gradient being copied into it; and a quarter of the parameters, which lie
// in the ranks' shared shards.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { tinyTrainDir } from '../helpers.js';
import { deeperModel, sameRun, train, weights } from './train_runs.js';

test('ZeRO-2 on 4 ranks (bf16): 1 rank × grad-accum 4\'s run, with a quarter of the gradients and optimizer state per rank', () => {
  const dir = tinyTrainDir('kestrel-zero2-mem-');
  deeperModel(dir, 4);
  const bucket = 600;
  writeFileSync(join(dir, 'ds.json'), JSON.stringify({ zero_optimization: { stage: 2, reduce_bucket_size: bucket } }));
  const one = train(dir, 'one', ['--grad-accum', '4', '--dtype', 'bf16']);
  const four = train(dir, 'four', ['--nproc', '4', '--dtype', 'bf16', '--deepspeed', join(dir, 'ds.json')]);
  sameRun(dir, one, four, 'one', 'four');
  const psi = one.peaks[0].param / 4; // the model's float32 parameters, in elements
  const largestParam = 32 * 16; // embed_tokens, lm_head and the MLP matrices: 512 elements
  const bucketMax = bucket + largestParam; // a bucket closes before the parameter that would overflow it
  const padding = 4 * 16 * weights(join(dir, 'one', 'model.safetensors')).size; // < 16 elements per bucket, a bucket per parameter tensor at most
  assert.ok(one.peaks.every((p) => p.grad >= psi * 4), `1 rank's gradient peak ${one.peaks[0].grad} < Ψ·4 = ${psi * 4}`);
  for (const [i, p] of four.peaks.entries()) {
    const gradBound = (psi * 4) / 4 + padding + 4 * (2 * bucketMax + largestParam);
    assert.ok(p.grad <= gradBound, `step ${i + 1}: rank 0's gradient peak ${p.grad} bytes > Ψ·4/4 + 2 buckets + 1 parameter = ${gradBound} (1 rank: ${one.peaks[i].grad})`);
    assert.ok(p.grad < one.peaks[i].grad / 2, `step ${i + 1}: gradient peak ${p.grad} is not well below 1 rank's ${one.peaks[i].grad}`);
    assert.ok(p.optimizer <= one.peaks[i].optimizer / 4 + 2 * padding, `step ${i + 1}: optimizer state ${p.optimizer} bytes > 1 rank's ${one.peaks[i].optimizer} / 4 + padding`);
    assert.ok(p.param <= one.peaks[i].param / 4 + padding, `step ${i + 1}: parameter memory ${p.param} bytes > 1 rank's ${one.peaks[i].param} / 4 + padding (the parameters lie in the shared shards)`);
  }
});
