// Data-parallel training (ZeRO stage 0) through the real CLI: N ranks × A micro-batches per rank
// see the same global batch as 1 rank × N·A micro-batches, and each rank's loss is normalised by
// the global batch's tokens, so the summed gradient is the same float32 sum in the same order
// (rank 0's micro-batches first): final weights equal bit for bit, losses to float64 rounding of
// the per-rank loss sum. With accumulation on each rank the float32 sum is grouped per rank
// ((g0+g1)+(g2+g3) instead of ((g0+g1)+g2)+g3): equal within float32 reduction-order tolerance.
// Clipping by the global norm and bf16 autocast ride along.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { assertClose, runCli, tinyTrainDir } from '../helpers.js';
import { kestrelSegments, segmentsLeft } from './ranks.js';
import { train, weights } from './train_runs.js';

for (const [ranks, accum, dtype] of [[2, 1, 'fp32'], [2, 2, 'fp32'], [2, 1, 'bf16']] as const) {
  test(`${ranks} ranks × grad-accum ${accum} (${dtype}) equal 1 rank × grad-accum ${ranks * accum}`, () => {
    const before = kestrelSegments();
    const dir = tinyTrainDir('kestrel-ddp-');
    const one = train(dir, 'one', ['--grad-accum', String(ranks * accum), '--dtype', dtype]);
    const many = train(dir, 'many', ['--nproc', String(ranks), '--grad-accum', String(accum), '--dtype', dtype]);
    assert.equal(many.losses.length, 3, 'rank 0 alone writes metrics.jsonl: one line per step');
    const exact = accum === 1; // the same float32 additions in the same order
    for (let i = 0; i < 3; i++) {
      const tol = exact ? 1e-12 : 1e-6;
      assert.ok(Math.abs(many.losses[i] - one.losses[i]) <= tol * one.losses[i], `step ${i + 1} loss ${many.losses[i]} vs ${one.losses[i]}`);
      if (exact) assert.equal(many.norms[i], one.norms[i], `step ${i + 1} gradient norm`);
      else assertClose([many.norms[i]], [one.norms[i]], { atol: 0, rtol: 1e-6, what: `step ${i + 1} gradient norm` });
    }
    assert.ok(one.norms.some((n) => n > 1.2), 'clipping was exercised');
    if (exact) assert.ok(many.weights.equals(one.weights), 'final weights differ');
    else {
      const [a, b] = [weights(join(dir, 'many', 'model.safetensors')), weights(join(dir, 'one', 'model.safetensors'))];
      assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
      for (const [name, v] of a) assertClose(v, b.get(name)!, { atol: 1e-6, rtol: 1e-5, what: name });
    }
    assert.deepEqual(segmentsLeft(before), []);
  });
}

test('LoRA fine-tuning on 2 ranks equals 1 rank × grad-accum 2 (the adapter bit for bit)', () => {
  const dir = tinyTrainDir('kestrel-ddp-lora-');
  train(dir, 'base', ['--max-steps', '1']); // a saved model folder to fine-tune
  const adapter = (out: string, extra: string[]): Buffer => {
    const r = runCli(['finetune', '--model', join(dir, 'base'), '--data', join(dir, 'train.jsonl'), '--output', join(dir, out), '--lora-r', '4',
      '--max-steps', '2', '--batch-size', '2', '--seq-len', '10', '--eval-fraction', '0', '--dtype', 'fp32', '--quiet', ...extra]);
    assert.equal(r.status, 0, r.stderr);
    return readFileSync(join(dir, out, 'adapter_model.safetensors'));
  };
  assert.ok(adapter('many', ['--nproc', '2']).equals(adapter('one', ['--grad-accum', '2'])), 'adapters differ');
});
