// The caching allocator in a real loop on the cpu backend: after warm-up, a tiny Llama's training
// steps (forward, backward, clipping, AdamW) and a repeated greedy decode take no new block from the
// OS (every storage is a reused one, counted by k.memory.stats().osAllocs, not timed); and a
// training step over poisoned memory (every non-zeroed block NaN-filled) gives bit-identical
// loss and gradients, so no op relied on new memory being zero.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as k from '../../src/index.js';
import { loadNative, nativeLoadError } from '../../src/backend/addon.js';
import { decoderConfig } from '../../src/models/registry.js';

const addon = loadNative();
const skip = addon ? false : `native addon not built: ${nativeLoadError()}`;

const config = decoderConfig({
  model_type: 'llama', vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64,
}, 'alloc test config');

const seqs = Array.from({ length: 4 }, (_, i) => Array.from({ length: 16 }, (_, t) => (i * 5 + t * 3) % 64));
const batch: k.data.Batch = { inputIds: seqs, labels: seqs, attentionMask: seqs.map((r) => r.map(() => 1)) };

function trainer(): { model: k.CausalLM; step: () => number } {
  k.setDefaultBackend('cpu');
  k.manualSeed(7);
  const model = new k.CausalLM(config).train();
  const opt = new k.optim.AdamW(model.parameters(), { lr: 1e-3 });
  return {
    model,
    step: () => {
      const { loss } = k.train.accumulateGradients(model, [batch]);
      k.optim.clipGradNorm(model.parameters(), 1);
      opt.step();
      opt.zeroGrad();
      return loss;
    },
  };
}

test('training steps reach a steady state with no new OS allocations', { skip }, () => {
  const { model, step } = trainer();
  step();
  step(); // the first steps create the optimizer state, grads and every activation size once
  const before = k.memory.stats('cpu');
  for (let i = 0; i < 3; i++) step();
  const after = k.memory.stats('cpu');
  assert.equal(after.osAllocs, before.osAllocs, `${after.osAllocs - before.osAllocs} new OS blocks in 3 steady steps`);
  assert.ok(after.cached > 0, 'the step\'s freed activations wait in the cache');
  model.dispose();
});

test('decoding again takes no new OS blocks; one decode only as its growing tensors cross size classes', { skip }, async () => {
  k.setDefaultBackend('cpu');
  k.manualSeed(8);
  const model = new k.CausalLM(config);
  const ids = k.tensor([[1, 2, 3, 4, 5]], { dtype: 'int64' });
  const decode = async (): Promise<number[]> => {
    const counts: number[] = [];
    for await (const _ of k.generateStream(model, ids, { maxNewTokens: 24 })) counts.push(k.memory.stats('cpu').osAllocs);
    return counts;
  };
  const first = await decode();
  const second = await decode();
  const third = await decode();
  // a server's steady state: a later request finds every block it needs in the cache. The model keeps
  // its decode cache and graph (src/infer/cpu_graph_decode.ts), whose blocks the first decode took
  // from its own freed ones, so only the second decode's prompt may take new blocks; none after that
  assert.equal(second[23], second[0], `OS blocks per step, second decode: ${second.join(' ')}`);
  assert.deepEqual(third, second.map(() => second[23]), `OS blocks per step, third decode: ${third.join(' ')}`);
  // within one decode the attention's contiguous copies of the cached keys and values grow by a
  // token a step: [1, 2, 8..28, 8] float32 = 512..1792 bytes, which crosses 7 size classes (640, 768,
  // 896, 1024, 1280, 1536, 1792), so at most 7 new blocks each for k and v (exact sizes: one a step)
  assert.ok(first[23] - first[3] <= 14, `OS blocks per step, first decode: ${first.join(' ')}`);
  ids.dispose();
  model.dispose();
});

test('a training step over poisoned (NaN-filled) new memory gives identical loss and grads', { skip }, () => {
  const run = (poison: boolean): { losses: number[]; grads: Float32Array[] } => {
    const s = addon!.allocStats();
    addon!.allocEmptyCache(); // poison fills every non-zeroed block handed out, new or reused
    addon!.allocConfigure(s.limit, s.enabled, poison);
    try {
      const { model, step } = trainer();
      const losses = [step(), step()];
      const { loss } = k.train.accumulateGradients(model, [batch]);
      losses.push(loss);
      const grads = model.parameters().map((p) => p.grad!.toFloat32Array());
      model.dispose();
      return { losses, grads };
    } finally {
      addon!.allocConfigure(s.limit, s.enabled, s.poison);
    }
  };
  const clean = run(false), poisoned = run(true);
  assert.deepEqual(poisoned.losses, clean.losses);
  poisoned.grads.forEach((g, i) => assert.deepEqual(g, clean.grads[i], `grad ${i}`));
  assert.ok(clean.losses.every(Number.isFinite));
});
