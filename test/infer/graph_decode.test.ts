// Batch-1 decoding through a recorded CUDA graph (src/infer/graph_decode.ts) gives exactly the
// tokens and scores of step-by-step decoding (greedy, sampled and with a repetition penalty), on
// models with sliding windows and soft-capping too; models or batches the graph cannot take fall
// back; nothing stays allocated afterwards; a bf16 KV cache for a float32 model too. On the emulator
// in CI, on the GPU in bench/gpu/run.sh.
import { skipUnless } from '../devices.js';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { GraphDecoder, graphDecodeBlocker } from '../../src/infer/graph_decode.js';
import { assertClose, withEnv } from '../helpers.js';
import { fixture } from '../fixtures.js';

const skip = skipUnless('cuda');

async function decode(name: string, opts: k.GenerateOptions, graphs: boolean): Promise<{ ids: number[][]; scores: Float32Array[] }> {
  return withEnv('KESTREL_CUDA_GRAPHS', graphs ? '1' : '0', async () => {
    const { model } = await k.loadCausalLM(fixture('models', name).path, { backend: 'cuda' });
    const scores: Float32Array[] = [];
    const ids = k.tensor([[3, 17, 42, 7, 99]], { dtype: 'int64', backend: 'cuda' });
    const out = await model.generate(ids, { maxNewTokens: 8, eosTokenId: [], onScores: opts.temperature === 0 && !opts.repetitionPenalty ? undefined : (_, s) => scores.push(s[0].slice()), ...opts });
    const result = { ids: out.toArray() as number[][], scores };
    for (const t of [ids, out]) t.dispose();
    model.dispose();
    return result;
  });
}

/** Decodes with and without the graph: the graph path records one step and gives the same ids and scores. */
async function graphEqualsEager(name: string, opts: k.GenerateOptions): Promise<void> {
  const eager = await decode(name, opts, false);
  const captures = GraphDecoder.captures;
  const graph = await decode(name, opts, true);
  assert.equal(GraphDecoder.captures, captures + 1, 'the graph path recorded one step');
  assert.deepEqual(graph.ids, eager.ids, `${name} ${JSON.stringify(opts)}: ids`);
  graph.scores.forEach((s, i) => assertClose(s, eager.scores[i], { atol: 1e-5, rtol: 1e-5, what: `${name} step ${i} scores` }));
}

for (const name of ['llama', 'gemma2', 'mistral-sliding-window'])
  test(`${name}: graph decoding equals step-by-step decoding`, { skip: skip || fixture('models', name).skip }, async () => {
    const before = k.memory.stats('cuda').current.total;
    for (const opts of [{ temperature: 0 }, { temperature: 0.8, seed: 3 }, { temperature: 0, repetitionPenalty: 1.3 }] as k.GenerateOptions[])
      await graphEqualsEager(name, opts);
    assert.equal(k.memory.stats('cuda').current.total, before, 'no device memory left behind');
  });

test('llama with a bf16 KV cache (kvCacheDtype): graph decoding equals step-by-step decoding', { skip: skip || fixture('models', 'llama').skip }, async () => {
  // the captured step writes each new key into the static cache in the cache's dtype
  await graphEqualsEager('llama', { temperature: 0.8, seed: 3, kvCacheDtype: 'bfloat16' });
});

test('llama: graph decoding with decode attention split over the keys (scratch kept for the graph)', { skip: skip || fixture('models', 'llama').skip }, async () => {
  // 45 cached positions: two shares of keys per head, their partial results in scratch memory the
  // capture allocates and every replay reuses (attention_decode.cu)
  await withEnv('KESTREL_CUDA_DECODE_SPLITS', '2', async () => {
    const before = k.memory.stats('cuda').current.total;
    await graphEqualsEager('llama', { temperature: 0.8, seed: 5, maxNewTokens: 40 });
    assert.equal(k.memory.stats('cuda').current.total, before, 'no device memory left behind');
  });
});

test('models and batches a graph cannot decode fall back, with the reason', { skip: skip || fixture('models', 'mixtral').skip }, async () => {
  const { model: moe } = await k.loadCausalLM(fixture('models', 'mixtral').path, { backend: 'cuda' });
  assert.match(graphDecodeBlocker(moe, 'cuda', 1, false) ?? '', /mixture of experts/);
  const { model } = await k.loadCausalLM(fixture('models', 'llama').path, { backend: 'cuda' });
  assert.equal(graphDecodeBlocker(model, 'cuda', 1, false), process.env.KESTREL_CUDA_SYNC === '1' ? 'KESTREL_CUDA_SYNC=1' : null);
  assert.match(graphDecodeBlocker(model, 'cuda', 2, false) ?? '', /batch > 1/);
  assert.match(graphDecodeBlocker(model, 'cpu', 1, false) ?? '', /not on the cuda backend/);
  moe.dispose();
  model.dispose();
});
