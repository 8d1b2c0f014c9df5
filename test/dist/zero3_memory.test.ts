// ZeRO stage 3 on 4 ranks (bf16 autocast, a 4-layer tiny llama): the same run as 1 rank × grad-accum
// 4, and each rank's k.memory peaks show what stage 3 partitions. 1 rank holds Ψ float32
// parameters; a stage-3 rank holds its quarter of every layer (each arena padded to a multiple of
// 4), the parameters outside the layers whole (embeddings, head, final norm: stage 2 keeps them,
// plus its quarter-size master shard of them) and the gathered layers: the running one and the one
// prefetched. With ds_config stage3_prefetch_bucket_size 0 nothing is prefetched: one layer less.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { assertClose, tinyTrainDir } from '../helpers.js';
import { type Peak, deeperModel, sameWeights, train } from './train_runs.js';

const [V, D, F, kv, L] = [32, 16, 32, 8, 4]; // deeperModel's shapes: vocab, hidden, MLP, k/v width (1 kv head × 8)
const layer = 2 * D * D + 2 * D * kv + 3 * D * F + 2 * D; // q, o; k, v; gate, up, down; two norms: 2336
const outer = 2 * V * D + D; // embed_tokens, lm_head, norm: 1040
const ARENAS = 2; // per layer: the weight-decay group's matrices, the no-decay group's norms

/** Upper bound on a stage-3 rank's parameter bytes with `live` gathered layers, N ranks. */
const paramBound = (N: number, live: number): number =>
  4 * (L * (layer / N + ARENAS) + outer + (outer / N + ARENAS) + live * (layer + ARENAS * N));

test('ZeRO-3 on 4 ranks (bf16): 1 rank × grad-accum 4\'s run with a quarter of each layer per rank, + the running and the prefetched layer', async () => {
  const dir = tinyTrainDir('kestrel-zero3-mem-');
  deeperModel(dir, L);
  const one = train(dir, 'one', ['--grad-accum', '4', '--dtype', 'bf16']);
  const four = train(dir, 'four', ['--nproc', '4', '--zero-stage', '3', '--dtype', 'bf16']);
  assertClose(four.losses, one.losses, { atol: 0, rtol: 2e-6, what: 'losses' });
  assertClose(four.norms, one.norms, { atol: 1e-7, rtol: 1e-5, what: 'gradient norms' });
  await sameWeights(join(dir, 'four'), join(dir, 'one', 'model.safetensors'));
  const psi = L * layer + outer;
  assert.ok(one.peaks.every((p) => p.param === 4 * psi), `1 rank's parameter peak ${one.peaks[0].param} != Ψ·4 = ${4 * psi}`);
  for (const [i, p] of four.peaks.entries()) {
    assert.ok(p.param <= paramBound(4, 2), `step ${i + 1}: rank 0's parameter peak ${p.param} bytes > Ψ_layers/4 + outside + 2 layers = ${paramBound(4, 2)} (1 rank: ${one.peaks[i].param})`);
    // gradients: the layer shards' quarter, the outside ones whole (stage 2 accumulates them in .grad, and
    // its bucket), one layer's flat gradient (each parameter's copied in as it completes, then freed: one
    // parameter gradient at a time, the largest D·F) and the previous layer's being reduce-scattered
    const gradBound = 4 * (L * (layer / 4 + ARENAS) + outer + (outer / 4 + ARENAS) + outer + 2 * (layer + ARENAS * 4) + D * F);
    assert.ok(p.grad <= gradBound, `step ${i + 1}: gradient peak ${p.grad} > ${gradBound} (1 rank: ${one.peaks[i].grad})`);
    assert.ok(p.optimizer <= one.peaks[i].optimizer / 4 + 4 * 2 * (L * ARENAS + ARENAS), `step ${i + 1}: optimizer state ${p.optimizer} > 1 rank's ${one.peaks[i].optimizer} / 4 + padding`);
  }
});

test('ZeRO-3 with stage3_prefetch_bucket_size 0 (2 ranks): nothing is prefetched, one gathered layer at a time', () => {
  const dir = tinyTrainDir('kestrel-zero3-nopf-');
  deeperModel(dir, L);
  writeFileSync(join(dir, 'ds.json'), JSON.stringify({ zero_optimization: { stage: 3, stage3_prefetch_bucket_size: 0 } }));
  const one = train(dir, 'one', ['--grad-accum', '2']);
  const two = train(dir, 'two', ['--nproc', '2', '--deepspeed', join(dir, 'ds.json')]);
  assertClose(two.losses, one.losses, { atol: 0, rtol: 2e-6, what: 'losses' });
  const peaks: Peak[] = two.peaks;
  for (const [i, p] of peaks.entries()) {
    assert.ok(p.param <= paramBound(2, 1), `step ${i + 1}: parameter peak ${p.param} > Ψ_layers/2 + outside + 1 layer = ${paramBound(2, 1)}`);
    assert.ok(p.param > paramBound(2, 0), `step ${i + 1}: parameter peak ${p.param}: no layer was ever gathered?`);
  }
});
