// ZeRO stage 3 through the real CLI: 2 ranks, each keeping half of every decoder layer and
// gathering it around its forward and backward, equal 1 rank × grad-accum 4 within float32
// reduction-order tolerance (the global norm is a sum of shard norms, and each micro-step's layer
// gradients are summed over ranks before the micro-steps are summed), with clipping (1.2 is
// exceeded), accumulation on the ranks and selective activation checkpointing (its recomputation
// runs inside the layer's own backward, while the layer is gathered); and with fp16 loss scaling and
// full checkpointing (the layer's recomputation is itself the gathered unit). The final model is written as an HF
// sharded folder layer by layer; it loads with k.loadPretrained and equals the 1-rank model.
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { assertClose, tinyTrainDir } from '../helpers.js';
import { kestrelSegments, segmentsLeft } from './ranks.js';
import { deeperModel, sameWeights, train } from './train_runs.js';

test('ZeRO-3: 2 ranks × grad-accum 2 (selective checkpointing) equal 1 rank × grad-accum 4; the sharded HF folder loads and equals it', async () => {
  const before = kestrelSegments();
  const dir = tinyTrainDir('kestrel-zero3-');
  deeperModel(dir, 3);
  const one = train(dir, 'one', ['--grad-accum', '4']);
  const many = train(dir, 'zero3', ['--nproc', '2', '--zero-stage', '3', '--grad-accum', '2', '--checkpointing', 'selective']);
  assert.ok(one.norms.some((n) => n > 1.2), 'clipping was exercised');
  assertClose(many.losses, one.losses, { atol: 0, rtol: 2e-6, what: 'losses' });
  assertClose(many.norms, one.norms, { atol: 1e-7, rtol: 1e-5, what: 'gradient norms' });
  assert.ok(existsSync(join(dir, 'zero3', 'model.safetensors.index.json')), 'a sharded HF folder');
  assert.ok(!existsSync(join(dir, 'zero3', 'model.safetensors')), 'no single-file model beside the index');
  await sameWeights(join(dir, 'zero3'), join(dir, 'one', 'model.safetensors'));
  assert.deepEqual(segmentsLeft(before), []);
});

test('ZeRO-3 with fp16 loss scaling and full checkpointing on 2 ranks: overflow skips agree (a non-finite shard makes every rank\'s norm sum non-finite), the run equals 1 rank\'s (no checkpointing)', async () => {
  const dir = tinyTrainDir('kestrel-zero3-fp16-');
  deeperModel(dir, 2);
  // from 2^20 the first steps overflow and are skipped, then the scale settles
  writeFileSync(join(dir, 'ds.json'), JSON.stringify({ fp16: { enabled: true, initial_scale_power: 20, loss_scale_window: 2 }, zero_optimization: { stage: 3 } }));
  const flags = ['--dtype', 'fp16', '--deepspeed', join(dir, 'ds.json'), '--max-steps', '6'];
  const one = train(dir, 'one', ['--grad-accum', '2', ...flags]);
  // full checkpointing changes no value: the layers' recomputation runs gathered, inside their backward
  const two = train(dir, 'two', ['--nproc', '2', '--checkpointing', 'full', ...flags]);
  assert.ok(one.scales.some((s, i) => i > 0 && s! < one.scales[i - 1]!), `no overflow skip happened: scales ${one.scales.join(', ')}`);
  assertClose(two.losses, one.losses, { atol: 0, rtol: 2e-6, what: 'losses' });
  assertClose(two.norms.filter(Number.isFinite), one.norms.filter(Number.isFinite), { atol: 1e-7, rtol: 1e-5, what: 'finite gradient norms' });
  assert.deepEqual(two.scales, one.scales, 'loss-scale sequence (the same steps skipped)');
  await sameWeights(join(dir, 'two'), join(dir, 'one', 'model.safetensors'));
});
