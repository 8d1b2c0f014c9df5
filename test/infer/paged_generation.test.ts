// Greedy decoding through the paged cache (src/infer/paged_step.ts) on the decoder fixtures:
// transformers' left-padded batch, unpadded and run as one ragged batch (prompt chunks of 3
// tokens, so sequences are at different stages in one forward), gives exactly transformers'
// greedy ids; covers GQA, a sliding window (mistral), soft-capping (gemma2), fused projections
// (phi3) and MoE (mixtral), on every native device (cuda: a GPU or the emulator, whose paged
// kernels are native/cuda/kernels/paged.cu). Also the block allocator: reference counts, prefix
// reuse, eviction.
import { ALL_DEVICES, type Device, skipUnless } from '../devices.js';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { pagedStep } from '../../src/infer/paged_step.js';
import { argmax } from '../../src/infer/sampling.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { fixture } from '../fixtures.js';

const FIXTURES = ['llama', 'mistral-sliding-window', 'gemma2', 'qwen2', 'phi3', 'mixtral'];
// the cuda run covers the paged kernels' options (GQA, window, soft-capping); the other families'
// layers are the same kernels on both paths and are checked on cuda by the decoder fixture tests
const CUDA_FIXTURES = ['llama', 'mistral-sliding-window', 'gemma2'];
const CHUNK = 3;

/** Greedy continuation of every prompt at once through the paged cache: each step feeds every unfinished prompt's next chunk or its last token. */
function pagedGreedy(model: k.CausalLM, prompts: number[][], steps: number, device: Device): number[][] {
  const c = model.config;
  const cache = new k.PagedKVCache({ numLayers: c.numLayers, numKvHeads: c.numKvHeads, headDim: c.headDim }, 64, 4, device);
  const seqs = prompts.map((p) => cache.open(p, ''));
  const tokens = prompts.map((p) => p.slice());
  const out = prompts.map(() => [] as number[]);
  while (out.some((o) => o.length < steps)) {
    const inputs = seqs.flatMap((seq, i) => {
      if (out[i].length >= steps) return [];
      const todo = tokens[i].length - seq.cached;
      const count = Math.min(todo, CHUNK);
      cache.reserve(seq, seq.cached + count);
      return [{ seq, tokens: tokens[i].slice(seq.cached, seq.cached + count), wantLogits: count === todo, i }];
    });
    const logits = pagedStep(model, cache, inputs);
    inputs.filter((x) => x.wantLogits).forEach((x, j) => {
      const t = argmax(logits[j]);
      tokens[x.i].push(t);
      out[x.i].push(t);
    });
  }
  for (const s of seqs) cache.close(s);
  assert.equal(cache.allocator.used, 0);
  cache.dispose();
  return out;
}

for (const device of ALL_DEVICES) {
  for (const name of device === 'cuda' ? CUDA_FIXTURES : FIXTURES) {
    const fx = fixture('models', name);
    describe(`${name} on ${device}: greedy ids through the paged cache equal transformers'`, { skip: fx.skip || skipUnless(device) }, () => {
      test('the left-padded batch, unpadded and run ragged', async () => {
        const { model } = await k.loadCausalLM(fx.path, { backend: device });
        using g = new SafetensorsFile(join(fx.path, 'golden.safetensors'));
        const ids = g.tensor('genb.input_ids').toArray() as number[][];
        const mask = g.tensor('genb.attention_mask').toArray() as number[][];
        const want = g.tensor('genb.output_ids').toArray() as number[][];
        const T = ids[0].length;
        const prompts = ids.map((row, b) => row.filter((_, j) => mask[b][j] === 1));
        const steps = want[0].length - T;
        const got = pagedGreedy(model as k.CausalLM, prompts, steps, device);
        got.forEach((row, b) => assert.deepEqual(row, want[b].slice(T), `${name} row ${b} (prompt of ${prompts[b].length} tokens)`));
        model.dispose();
      });
    });
  }
}

describe('BlockAllocator', () => {
  test('reference counts, prefix reuse, free at once, eviction of the oldest cached prefix', () => {
    const a = new k.BlockAllocator(3);
    const [h1, h2] = k.prefixHashes([1, 2, 3, 4], 2, 'base');
    assert.notEqual(h1, k.prefixHashes([1, 2], 2, 'adapter')[0], 'the salt changes the hash');
    assert.equal(k.prefixHashes([1, 2, 3], 2, 'base').length, 1, 'only full blocks are hashed');
    const b0 = a.allocate();
    const b1 = a.allocate();
    a.register(b0, h1);
    a.register(b1, h2);
    assert.equal(a.lookup(h1), b0);
    assert.equal(a.refCount(b0), 2);
    assert.equal(a.used, 2);
    a.release(b0);
    a.release(b0);
    a.release(b1);
    assert.equal(a.used, 0, 'unreferenced blocks are not in use');
    assert.equal(a.available, 3);
    assert.equal(a.lookup(h2), b1, 'an unreferenced block keeps its prefix until evicted');
    a.release(b1);
    const fresh = a.allocate(); // the never-used block first
    assert.ok(fresh !== b0 && fresh !== b1);
    assert.equal(a.allocate(), b0, 'then the least recently freed cached block');
    assert.equal(a.lookup(h1), null, 'its prefix is forgotten');
    assert.throws(() => a.release(fresh) ?? a.release(fresh), /released more often/);
  });
});
