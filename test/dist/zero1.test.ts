// ZeRO stage 1 through the real CLI: the optimizer state partitioned over 2 ranks gives 1 rank's
// weights (AdamW is elementwise, so a shard's update is the whole tensor's, sliced) within float32
// reduction-order tolerance: the gradients are reduce-scattered and the global norm is a sum of the
// ranks' shard norms, so the clipping factor can move by an ulp (as at stage 2). Each rank's
// k.memory 'optimizer' tag holds half of the single-rank figure (+ padding), and its 'grad' tag at
// least every gradient at once (stage 1 does not partition them; bench/dist_train.ts measures the bytes moved).
// On one machine the parameters lie in the ranks' shared shards (zero2.ts), so a rank counts half
// of them as its own.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { tinyTrainDir } from '../helpers.js';
import { sameRun, train, weights } from './train_runs.js';

test('ZeRO stage 1 on 2 ranks: 1 rank\'s weights, with half the optimizer state per rank and every gradient held', () => {
  const dir = tinyTrainDir('kestrel-zero1-');
  const one = train(dir, 'one', ['--grad-accum', '2']);
  const zero = train(dir, 'zero1', ['--nproc', '2', '--zero-stage', '1']);
  assert.ok(one.norms.some((n) => n > 1.2), 'clipping was exercised');
  sameRun(dir, one, zero, 'one', 'zero1');
  // AdamW's two float32 moments: 1 rank holds them for every element, a ZeRO-1 rank for its shard of
  // each bucket, whose slice is padded to whole 64-byte lines (< 16 elements per bucket; a bucket
  // holds at least one parameter tensor)
  const params = one.peaks[0].param / 4; // the model's float32 parameters, in elements
  const padding = 16 * weights(join(dir, 'one', 'model.safetensors')).size;
  for (const p of zero.peaks) {
    assert.equal(one.peaks[0].optimizer, 2 * 4 * params);
    assert.ok(p.grad >= one.peaks[0].param, `grad peak ${p.grad} bytes: every gradient (${one.peaks[0].param} bytes) is held until backward ends`);
    assert.ok(p.optimizer >= one.peaks[0].optimizer / 2 && p.optimizer <= one.peaks[0].optimizer / 2 + 2 * 4 * padding, `rank 0 optimizer state ${p.optimizer} bytes vs 1 rank's ${one.peaks[0].optimizer}`);
    assert.ok(p.param >= one.peaks[0].param / 2 && p.param <= one.peaks[0].param / 2 + 4 * padding, `rank 0 parameter memory ${p.param} bytes vs 1 rank's ${one.peaks[0].param}: half of it, in place`);
  }
});

