// `kestrel train --nproc N --expert-parallel M` on a tiny Mixtral (2 MoE layers of 4 experts, top-2)
// against the same global batch on 1 rank (--grad-accum N x): the experts split over M ranks (tokens
// by all-to-all), the dense part data parallel over N ranks under ZeRO 0/1/2, and with N > M the
// experts' gradients summed over the ranks holding the same experts. The loss curve, the gradient
// norms (dense and every expert, each counted once) and the saved whole model (rank 0 takes the other
// ranks' experts back) equal 1 rank's within float32 tolerance: GEMMs over different row counts round
// differently in the last bits. Memory: a rank holds 1/M of the expert weights and, under ZeRO-1 over
// 4 ranks with M = 4, a quarter of the optimizer state (dense shards and its own experts).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { assertClose, tinyTrainDir } from '../helpers.js';
import { train, weights } from './train_runs.js';

const [LAYERS, EXPERTS, D, F] = [2, 4, 16, 24];
/** float32 bytes of every expert weight: three [F, D] projections per expert per layer */
const EXPERT_BYTES = LAYERS * EXPERTS * 3 * D * F * 4;

function mixtralDir(): string {
  const dir = tinyTrainDir('kestrel-ep-train-');
  writeFileSync(join(dir, 'config.json'), JSON.stringify({
    model_type: 'mixtral', vocab_size: 32, hidden_size: D, intermediate_size: F, num_hidden_layers: LAYERS, num_attention_heads: 2,
    num_key_value_heads: 1, max_position_embeddings: 64, num_local_experts: EXPERTS, num_experts_per_tok: 2, initializer_range: 0.2,
  }));
  return dir;
}

function sameAsOneRank(dir: string, one: ReturnType<typeof train>, many: ReturnType<typeof train>, out: string, what: string): void {
  assertClose(many.losses, one.losses, { atol: 1e-6, rtol: 1e-5, what: `${what}: losses` });
  assertClose(many.norms, one.norms, { atol: 1e-6, rtol: 1e-4, what: `${what}: gradient norms` });
  const [a, b] = [weights(join(dir, out, 'model.safetensors')), weights(join(dir, 'one', 'model.safetensors'))];
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort(), `${what}: the saved model has every expert`);
  for (const [name, v] of a) assertClose(v, b.get(name)!, { atol: 2e-5, rtol: 1e-4, what: `${what}: ${name}` });
}

test('expert parallel training on 2 and 4 ranks under ZeRO 0/1/2 equals 1 rank: losses, norms, saved weights, memory', () => {
  const dir = mixtralDir();
  const one = train(dir, 'one', ['--grad-accum', '4']);
  assert.equal(one.losses.length, 3);

  const ep2 = train(dir, 'ep2', ['--nproc', '2', '--expert-parallel', '2', '--grad-accum', '2']);
  sameAsOneRank(dir, one, ep2, 'ep2', '2 ranks, experts over 2, ZeRO 0');
  // stage 0: every rank holds the whole dense part and half the experts
  assert.equal(one.peaks[0].param - ep2.peaks[0].param, EXPERT_BYTES / 2, 'rank 0 holds half the expert weights');

  const ep4 = train(dir, 'ep4', ['--nproc', '4', '--expert-parallel', '4', '--zero-stage', '1']);
  sameAsOneRank(dir, one, ep4, 'ep4', '4 ranks, experts over 4, ZeRO 1');
  // AdamW's two moments over a quarter of the dense part and one expert per layer; on one machine
  // each rank's slice of a reduce bucket is whole 64-byte lines (< 16 elements of padding per
  // bucket, a bucket per parameter tensor at most)
  const quarter = one.peaks[0].optimizer / 4;
  const padding = 16 * weights(join(dir, 'one', 'model.safetensors')).size;
  assert.ok(ep4.peaks[0].optimizer >= quarter && ep4.peaks[0].optimizer <= quarter + 2 * 4 * padding, `optimizer state ${ep4.peaks[0].optimizer} bytes vs 1 rank's ${one.peaks[0].optimizer}`);

  // 2 expert-parallel groups of 2: each expert's gradient is also summed over the 2 ranks that hold it
  const ep2x2 = train(dir, 'ep2x2', ['--nproc', '4', '--expert-parallel', '2', '--zero-stage', '2']);
  sameAsOneRank(dir, one, ep2x2, 'ep2x2', '4 ranks, experts over 2 (x2 data parallel), ZeRO 2');
});

test('--expert-parallel that does not divide the ranks, or without --nproc, is named', () => {
  const dir = mixtralDir();
  assert.throws(() => train(dir, 'bad', ['--nproc', '2', '--expert-parallel', '3']), /--expert-parallel 3: must be an integer >= 2 that divides the 2 ranks/);
  assert.throws(() => train(dir, 'bad1', ['--expert-parallel', '2']), /--expert-parallel 2: needs --nproc/);
});
