// BatchingEngine without HTTP, on a tiny random GQA Llama: 16 concurrent jobs of different prompt
// and output lengths (small prefill chunks, so prompts are split across steps while others decode)
// each give exactly what model.generate gives for that prompt alone (greedy), and seeded sampling
// equals generateStream's draws for a one-row run (per-row draws depend on seed, row and step
// only); an aborted job frees its KV blocks at once; a full queue answers 429; identical prompts
// share their full prefix blocks (block count), but not across adapters, and rows admitted together
// compute a shared block once (prompt tokens per step); a pool too small for all jobs makes them
// wait, not fail. On cuda (a GPU or the emulator: native/cuda/kernels/paged.cu) the engine batches
// continuously too, and concurrent jobs equal their own runs there.
import { skipUnless } from '../devices.js';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { decoderConfig } from '../../src/models/registry.js';
import { BatchingEngine, type BatchingOptions, type StepTiming } from '../../src/serve/batching_engine.js';
import type { GenerationJob } from '../../src/serve/engine.js';
import { ApiError } from '../../src/serve/errors.js';
import { hasCpu } from '../helpers.js';
import { injectLora, setAdapter } from '../../src/lora/peft.js';
import { normal_ } from '../../src/nn/init.js';

const BACKEND = hasCpu() ? 'cpu' : 'ref';
k.manualSeed(5);
const CONFIG = decoderConfig({
  model_type: 'llama', vocab_size: 48, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, max_position_embeddings: 256, initializer_range: 0.5,
}, 'config.json');
const model = new k.CausalLM(CONFIG);
model.to(BACKEND);

const BASE: BatchingOptions = { maxQueue: 8, kvCacheMb: 1, blockSize: 4, prefillChunk: 7, maxBatch: 32 };

function prompt(len: number, seed: number): number[] {
  return Array.from({ length: len }, (_, i) => 3 + ((i * 7 + seed * 13) % 40));
}

function job(rows: number[][], options: k.GenerateOptions, signal = new AbortController().signal, lm: k.CausalLM = model): GenerationJob {
  return { model: lm, adapter: null, rows, options: { eosTokenId: [], ...options }, topLogprobs: null, signal };
}

async function collect(steps: AsyncGenerator<{ tokens: number[] }>): Promise<number[][]> {
  const rows: number[][] = [];
  for await (const { tokens } of steps) tokens.forEach((t, b) => (rows[b] ??= []).push(t));
  return rows;
}

/** The one-request answer: generateStream on the prompt alone (contiguous KVCache, no batching). */
async function alone(p: number[], options: k.GenerateOptions, lm: k.CausalLM = model): Promise<number[]> {
  const out: number[] = [];
  const ids = k.tensor([p], { dtype: 'int64', backend: lm.parameters()[0].backendName });
  for await (const { tokens } of k.generateStream(lm, ids, { eosTokenId: [], ...options })) out.push(tokens[0]);
  ids.dispose();
  return out;
}

/**
 * `count` one-row jobs of different prompt and output lengths (every third sampled with its own seed)
 * submitted in waves of 4 a tick apart, so jobs join a batch that is already decoding; their tokens.
 */
async function concurrentJobs(engine: BatchingEngine, count: number, lm: k.CausalLM) {
  const specs = Array.from({ length: count }, (_, i) => {
    const [p, n, sample] = [prompt(1 + ((i * 5) % 23), i), 2 + (i % 7), i % 3 === 0];
    const opts: k.GenerateOptions = sample ? { maxNewTokens: n, temperature: 0.9, topK: 20, seed: 100 + i } : { maxNewTokens: n, temperature: 0 };
    return { p, sample, opts };
  });
  const runs: Promise<number[][]>[] = [];
  for (const [i, s] of specs.entries()) {
    runs.push(collect(engine.submit(job([s.p], s.opts, undefined, lm))));
    if (i % 4 === 3) await new Promise((r) => setImmediate(r));
  }
  return { specs, got: (await Promise.all(runs)).map((rows) => rows[0]) };
}

describe('BatchingEngine', () => {
  test('16 concurrent jobs of different lengths: each equals its own single-request run (greedy and seeded sampling)', async () => {
    const engine = new BatchingEngine(BASE);
    const { specs, got } = await concurrentJobs(engine, 16, model);
    for (const [i, s] of specs.entries()) assert.deepEqual(got[i], await alone(s.p, s.opts), `job ${i} (prompt ${s.p.length}, ${s.opts.maxNewTokens} tokens, ${s.sample ? 'sampled' : 'greedy'})`);
    assert.equal(engine.stats().kvBlocksUsed, 0, 'every block is free once all jobs ended');
  });

  test('a job with n rows of different prompts equals generateStream row by row (finished rows padded)', async () => {
    const engine = new BatchingEngine(BASE);
    const rows = [prompt(3, 1), prompt(9, 2)];
    const got = await collect(engine.submit(job(rows, { maxNewTokens: 5, temperature: 0 })));
    for (const [b, p] of rows.entries()) assert.deepEqual(got[b], await alone(p, { maxNewTokens: 5, temperature: 0 }), `row ${b}`);
  });

  test('an aborted job frees its blocks at once; the others finish', async () => {
    const engine = new BatchingEngine(BASE);
    const stop = new AbortController();
    const long = engine.submit(job([prompt(10, 1)], { maxNewTokens: 60, temperature: 0 }, stop.signal));
    const other = collect(engine.submit(job([prompt(5, 2)], { maxNewTokens: 6, temperature: 0 })));
    let seen = 0;
    let usedBefore = 0;
    for await (const _ of long) {
      if (++seen === 3) {
        usedBefore = engine.stats().kvBlocksUsed!;
        stop.abort();
        // blocks are taken as tokens are written: the 10 prompt tokens and 2 fed-back ones = 3 blocks of 4
        assert.equal(usedBefore - engine.stats().kvBlocksUsed!, 3, `abort freed the job's blocks (${usedBefore} -> ${engine.stats().kvBlocksUsed})`);
      }
    }
    assert.equal(seen, 3);
    assert.equal((await other)[0].length, 6);
    assert.equal(engine.stats().kvBlocksUsed, 0);
  });

  test('identical prompts share their full prefix blocks', async () => {
    const engine = new BatchingEngine({ ...BASE, prefillChunk: 64 });
    const p = prompt(18, 3); // 4 full blocks of 4 before the last token's block
    const first = engine.submit(job([p], { maxNewTokens: 30, temperature: 0 }));
    await first.next(); // the prompt is in the cache and its full blocks registered
    const alone1 = engine.stats().kvBlocksUsed!;
    const second = engine.submit(job([p], { maxNewTokens: 30, temperature: 0 }));
    await second.next();
    const both = engine.stats().kvBlocksUsed!;
    // the second holds only its own blocks past the shared 16 tokens: 1 (tokens 16..19) vs the first's 5
    assert.equal(both - alone1, 1, `second job added ${both - alone1} blocks (first alone held ${alone1})`);
    const [a, b] = await Promise.all([collect(first), collect(second)]);
    assert.deepEqual(a, b, 'the shared prefix gives the same continuation');
    assert.equal(engine.stats().kvBlocksUsed, 0);
  });

  test('rows admitted together compute a shared prompt block once (n choices, clients arriving at once), in one first step', async () => {
    const steps: StepTiming[] = [];
    const engine = new BatchingEngine({ ...BASE, prefillChunk: 64, onStep: (t) => steps.push(t) });
    const p = prompt(18, 3); // 4 full blocks of 4 before the last token's block
    const q = prompt(9, 4);
    const opts = { maxNewTokens: 5, temperature: 0 };
    const [three, other] = [collect(engine.submit(job([p, p, p], opts))), collect(engine.submit(job([q], opts)))];
    const got = await Promise.all([three, other]);
    // step 1: p's first row (18 tokens) and q (9) together; p's other rows wait for its 4 blocks,
    // then compute only tokens 16..17 each (without sharing: 3 x 18 + 9 = 63 prompt tokens)
    assert.deepEqual(steps.slice(0, 2).map((t) => [t.prefillTokens, t.decodeRows]), [[27, 0], [4, 2]]);
    assert.equal(steps.reduce((a, t) => a + t.prefillTokens, 0), 31);
    const want = await alone(p, opts);
    for (const b of [0, 1, 2]) assert.deepEqual(got[0][b], want, `row ${b}`);
    assert.deepEqual(got[1][0], await alone(q, opts));
    assert.equal(engine.stats().kvBlocksUsed, 0);
  });

  test('a pool for about one job at a time: the others wait for blocks, then run; a full queue answers 429', async () => {
    const blockBytes = k.PagedKVCache.bytesPerBlock({ numLayers: 2, numKvHeads: 2, headDim: 8 }, 4);
    const engine = new BatchingEngine({ ...BASE, maxQueue: 2, kvCacheMb: (6 * blockBytes) / 2 ** 20 }); // 6 blocks = 24 tokens
    const jobs = [0, 1, 2].map((i) => engine.submit(job([prompt(6, i)], { maxNewTokens: 12, temperature: 0 }))); // 18 tokens = 5 blocks each
    assert.deepEqual([engine.stats().running, engine.stats().queued], [1, 2], 'one runs, two wait for blocks');
    assert.throws(() => engine.submit(job([prompt(6, 9)], { maxNewTokens: 12, temperature: 0 })), (e: unknown) => e instanceof ApiError && e.status === 429);
    assert.throws(() => engine.submit(job([prompt(6, 9)], { maxNewTokens: 40, temperature: 0 })), (e: unknown) => e instanceof ApiError && e.status === 400 && /needs 12 KV blocks/.test(e.message));
    const narrow = new BatchingEngine({ ...BASE, maxBatch: 2 });
    assert.throws(() => narrow.submit(job([[1], [2], [3]], { maxNewTokens: 1 })), (e: unknown) => e instanceof ApiError && e.status === 400 && /3 choices .* at most 2 sequences/.test(e.message));
    const got = await Promise.all(jobs.map(collect));
    for (const [i, rows] of got.entries()) assert.deepEqual(rows[0], await alone(prompt(6, i), { maxNewTokens: 12, temperature: 0 }), `job ${i}`);
  });

  test('a step that throws ends the running jobs with the error and frees their blocks; the engine keeps serving', async () => {
    const engine = new BatchingEngine(BASE);
    const broken = engine.submit(job([prompt(5, 1)], { maxNewTokens: 4, temperature: 0, logitsProcessor: () => { throw new Error('processor failed'); } }));
    await assert.rejects(collect(broken), /processor failed/);
    assert.deepEqual([engine.stats().running, engine.stats().kvBlocksUsed], [0, 0]);
    const next = await collect(engine.submit(job([prompt(5, 1)], { maxNewTokens: 4, temperature: 0 })));
    assert.deepEqual(next[0], await alone(prompt(5, 1), { maxNewTokens: 4, temperature: 0 }));
  });

  test('base and adapter jobs on one model run side by side, each equal to its own run; the adapter salts the prefix cache', async () => {
    k.manualSeed(6);
    const lm = new k.CausalLM(CONFIG);
    lm.to(BACKEND);
    injectLora(lm, { r: 4, alpha: 8, targetModules: ['q_proj', 'v_proj'] }, 'tuned');
    // PEFT starts B at zero (a no-op adapter): give it weights that change the keys and values
    k.noGrad(() => { for (const [name, p] of lm.namedParameters()) if (name.includes('lora_B')) normal_(p, 0.5); });
    const engine = new BatchingEngine(BASE);
    const p = prompt(13, 4); // 3 full blocks of 4 before the last token's block
    const opts = { maxNewTokens: 8, temperature: 0, eosTokenId: [] };
    const submit = (adapter: string | null) => engine.submit({ ...job([p], opts), model: lm, adapter });
    const base = submit(null);
    const first = await base.next(); // the base prompt's blocks are cached now
    const tuned = collect(submit('tuned'));
    const rest = await collect(base);
    const got = { base: [first.value!.tokens[0], ...(rest[0] ?? [])], tuned: (await tuned)[0] };
    const want: Record<string, number[]> = {};
    for (const name of ['base', 'tuned'] as const) {
      setAdapter(lm, name === 'base' ? null : 'tuned');
      const ids = k.tensor([p], { dtype: 'int64', backend: BACKEND });
      want[name] = [];
      for await (const { tokens } of k.generateStream(lm, ids, opts)) want[name].push(tokens[0]);
      ids.dispose();
    }
    assert.notDeepEqual(want.base, want.tuned, 'the adapter changes the greedy output');
    assert.deepEqual(got, want);
    lm.dispose();
  });
});

describe('BatchingEngine on cuda', { skip: skipUnless('cuda') }, () => {
  test('8 concurrent jobs run through the paged cache: each equals its own run on cuda', async () => {
    const gpu = new k.CausalLM(CONFIG).to('cuda');
    gpu.loadStateDict(model.stateDict());
    const engine = new BatchingEngine(BASE);
    const { specs, got } = await concurrentJobs(engine, 8, gpu);
    assert.ok((engine.stats().kvBlocksTotal ?? 0) > 0, 'the jobs ran through the paged cache (the engine serves one request at a time where a backend has no paged kernels)');
    for (const [i, s] of specs.entries()) {
      assert.deepEqual(got[i], await alone(s.p, s.opts, gpu), `job ${i} (prompt ${s.p.length}, ${s.opts.maxNewTokens} tokens, ${s.sample ? 'sampled' : 'greedy'}) against cuda alone`);
    }
    assert.equal(engine.stats().kvBlocksUsed, 0, 'every block is free once all jobs ended');
    gpu.dispose();
  });
});
