// ZeRO stage 1 through the real CLI: the optimizer state partitioned over 2 ranks gives the same
// weights as 1 rank (AdamW is elementwise, so a shard's update is the whole tensor's, sliced) and
// each rank's k.memory 'optimizer' tag holds half of the single-rank figure (+ padding).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { tinyTrainDir } from '../helpers.js';
import { train } from './train_runs.js';

test('ZeRO stage 1 on 2 ranks: the same weights bit for bit as 1 rank, with half the optimizer state per rank', () => {
  const dir = tinyTrainDir('kestrel-zero1-');
  const one = train(dir, 'one', ['--grad-accum', '2']);
  const zero = train(dir, 'zero1', ['--nproc', '2', '--zero-stage', '1']);
  // AdamW is elementwise: updating a shard equals updating the whole tensor and slicing it
  assert.ok(zero.weights.equals(one.weights), 'final weights differ');
  assert.deepEqual(zero.norms, one.norms);
  // AdamW's two float32 moments: 1 rank holds them for every element, a ZeRO-1 rank for its shard of
  // each parameter group (decay / no decay), each group's elements rounded up to a multiple of 2
  const params = one.peaks[0].param / 4; // the model's float32 parameters, in elements
  for (const p of zero.peaks) {
    assert.equal(one.peaks[0].optimizer, 2 * 4 * params);
    assert.ok(p.optimizer >= one.peaks[0].optimizer / 2 && p.optimizer <= one.peaks[0].optimizer / 2 + 2 * 4 * 2, `rank 0 optimizer state ${p.optimizer} bytes vs 1 rank's ${one.peaks[0].optimizer}`);
  }
});

