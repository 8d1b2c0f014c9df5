// CPU graphs (src/backend/cpu/graph.ts, src/infer/cpu_graph_decode.ts). The reference is the same
// step run op by op: a replayed step runs the same kernels on the same arguments (the recorded ones
// moved by whole positions), so tokens and every step's scores must be bit for bit equal, on every
// decoder family whose shape the graph takes (sliding windows, soft-capping, qkv bias, fused
// projections, llama3 rope scaling), float and quantized, greedy, sampled and penalized, past several
// 64-key attention tiles. What a replay could not reproduce (non-affine arguments, a read back, a
// changing upload) must stop the recording with its reason while the step still runs; nothing stays allocated.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { loadNative } from '../../src/backend/addon.js';
import { CpuGraph, Recording, record, releasePool, type PoolEntry } from '../../src/backend/cpu/graph.js';
import { CpuGraphDecoder, cpuGraphBlocker } from '../../src/infer/cpu_graph_decode.js';
import { skipUnless } from '../devices.js';
import { fixture } from '../fixtures.js';
import { withEnv } from '../helpers.js';

const skip = skipUnless('cpu');

interface Run {
  ids: number[][];
  scores: Float32Array[];
}

async function decode(model: k.CausalLM | k.Gpt2LMHeadModel, opts: k.GenerateOptions, graphs: boolean, prompt = [3, 17, 42, 7, 99]): Promise<Run> {
  return withEnv('KESTREL_CPU_GRAPHS', graphs ? '1' : '0', async () => {
    const scores: Float32Array[] = [];
    const ids = k.tensor([prompt], { dtype: 'int64' });
    const out = await model.generate(ids, { eosTokenId: [], onScores: (_, s) => scores.push(s[0].slice()), ...opts });
    const result = { ids: out.toArray() as number[][], scores };
    ids.dispose();
    out.dispose();
    return result;
  });
}

function assertSame(graph: Run, eager: Run, what: string): void {
  assert.deepEqual(graph.ids, eager.ids, `${what}: ids`);
  assert.equal(graph.scores.length, eager.scores.length, `${what}: steps`);
  graph.scores.forEach((s, i) => assert.ok(s.every((x, j) => Object.is(x, eager.scores[i][j])), `${what}: step ${i} scores differ`));
}

describe('CPU graph decoding', { skip }, () => {
  for (const name of ['llama', 'llama-tied-rope-llama3', 'mistral-sliding-window', 'qwen2', 'gemma', 'gemma2', 'phi3'])
    test(`${name}: replayed steps equal step-by-step decoding bit for bit`, { skip: fixture('models', name).skip }, async () => {
      const before = k.memory.stats('cpu').current.total;
      const { model } = await k.loadCausalLM(fixture('models', name).path);
      const opts: k.GenerateOptions[] = [{ temperature: 0, maxNewTokens: 10 }, { temperature: 0.8, seed: 3, maxNewTokens: 10 }, { temperature: 0, repetitionPenalty: 1.3, maxNewTokens: 10 }];
      for (const [i, o] of opts.entries()) {
        const eager = await decode(model, o, false);
        const [built, reused] = [CpuGraphDecoder.built, CpuGraphDecoder.reused];
        const graph = await decode(model, o, true);
        // the first generation: steps 1 (plain), 2-4 (recorded), 5-9 replayed; the later ones (same
        // prompt, other sampling: the same step) check their first step against the kept graph and replay the rest
        assert.deepEqual([CpuGraphDecoder.built - built, CpuGraphDecoder.reused - reused], i === 0 ? [1, 0] : [0, 1], `${name}: graph built once, then kept`);
        assertSame(graph, eager, `${name} ${JSON.stringify(o)}`);
      }
      model.dispose();
      assert.equal(k.memory.stats('cpu').current.total, before, 'no block left behind');
    });

  test('a quantized model (int8, q4) over 150 steps: past several 64-key tiles, scores bit for bit', async () => {
    for (const type of ['int8', 'q4'] as const) {
      const { model } = await k.loadCausalLM(fixture('models', 'llama').path);
      k.quantizeForInference(model, type);
      const o = { temperature: 0, maxNewTokens: 150 };
      const prompt = Array.from({ length: 9 }, (_, i) => (i * 37 + 11) % model.config.vocabSize);
      assertSame(await decode(model, o, true, prompt), await decode(model, o, false, prompt), `llama ${type}`);
      model.dispose();
    }
  });

  test('a kept graph serves later generations: shorter and longer prompts, a longer cache, new weights, other settings, two at once', async () => {
    const before = k.memory.stats('cpu').current.total;
    const { model } = await k.loadCausalLM(fixture('models', 'llama').path);
    const V = model.config.vocabSize;
    const prompt = (n: number, seed: number): number[] => Array.from({ length: n }, (_, i) => (i * 31 + seed * 7 + 5) % V);
    /** a graph generation against the op-by-op one, and what it did with the kept graph ([built, reused]) */
    const run = async (p: number[], o: k.GenerateOptions, what: string): Promise<[number, number]> => {
      const eager = await decode(model, o, false, p);
      const [built, reused] = [CpuGraphDecoder.built, CpuGraphDecoder.reused];
      assertSame(await decode(model, o, true, p), eager, what);
      return [CpuGraphDecoder.built - built, CpuGraphDecoder.reused - reused];
    };
    const greedy = { temperature: 0, maxNewTokens: 12 };
    assert.deepEqual(await run(prompt(9, 1), greedy, 'first'), [1, 0], 'the first generation builds');
    // replays move the recorded positions back (a shorter prompt) and on (a longer one) by whole steps
    assert.deepEqual(await run(prompt(2, 2), greedy, 'shorter prompt'), [0, 1], 'a shorter prompt replays the kept graph');
    assert.deepEqual(await run(prompt(40, 3), greedy, 'longer prompt'), [0, 1], 'a longer prompt replays the kept graph');
    // more positions than the kept cache holds (256): a new cache, so a new graph, kept in its place
    assert.deepEqual(await run(prompt(250, 4), greedy, 'longer cache'), [1, 0], 'a longer cache records anew');
    assert.deepEqual(await run(prompt(5, 5), greedy, 'after the longer cache'), [0, 1]);
    // the separate decode ops (another sequence of calls), then the fused ones again: recorded afresh each time
    const separate = await withEnv('KESTREL_DECODE_FUSION', 'off', () => run(prompt(6, 6), greedy, 'separate ops'));
    assert.deepEqual(separate, [1, 0], 'other calls: the first step does not match, the graph is recorded again');
    assert.deepEqual(await run(prompt(6, 7), greedy, 'fused ops again'), [1, 0]);
    // weights replaced after a generation (quantized): the step reads other blocks, so it is recorded again
    k.quantizeForInference(model, 'int8');
    assert.deepEqual(await run(prompt(7, 8), greedy, 'int8 weights'), [1, 0], 'replaced weights: recorded again');
    // weights changed in place: the graph reads the same blocks, so it is kept, and sees the new values
    k.noGrad(() => k.tidy(() => {
      const w = (model as k.CausalLM).model.norm.weight;
      k.copy_(w, k.mul(w, 1.5));
    }));
    assert.deepEqual(await run(prompt(7, 9), greedy, 'weights changed in place'), [0, 1]);
    // two generations at once: the second gets a decoder of its own (disposed after), each equals its eager run
    const eagerA = await decode(model, greedy, false, prompt(4, 10));
    const eagerB = await decode(model, greedy, false, prompt(8, 11));
    const streams = await withEnv('KESTREL_CPU_GRAPHS', '1', async () => {
      const [ia, ib] = [k.tensor([prompt(4, 10)], { dtype: 'int64' }), k.tensor([prompt(8, 11)], { dtype: 'int64' })];
      const a = model.stream(ia, { ...greedy, eosTokenId: [] });
      const b = model.stream(ib, { ...greedy, eosTokenId: [] });
      const out: number[][] = [[], []];
      for (let i = 0; i < greedy.maxNewTokens; i++) {
        out[0].push((await a.next()).value!.tokens[0]);
        out[1].push((await b.next()).value!.tokens[0]);
      }
      await Promise.all([a.return(undefined), b.return(undefined)]);
      ia.dispose(), ib.dispose();
      return out;
    });
    assert.deepEqual(streams[0], eagerA.ids[0].slice(4), 'interleaved stream a');
    assert.deepEqual(streams[1], eagerB.ids[0].slice(8), 'interleaved stream b');
    const kept = k.memory.stats('cpu').current.total;
    model.detachAll();
    assert.ok(k.memory.stats('cpu').current.total < kept, 'detachAll frees the kept cache and graph');
    await run(prompt(3, 12), greedy, 'after detachAll');
    model.dispose();
    assert.equal(k.memory.stats('cpu').current.total, before, 'dispose frees the kept decoder: no block left behind');
  });

  test('models and batches a graph cannot take decode step by step, with the reason', { skip: fixture('models', 'mixtral').skip }, async () => {
    const { model: moe } = await k.loadCausalLM(fixture('models', 'mixtral').path);
    assert.match(cpuGraphBlocker(moe, 'cpu', 1, false) ?? '', /mixture of experts/);
    const { model } = await k.loadCausalLM(fixture('models', 'llama').path);
    assert.equal(cpuGraphBlocker(model, 'cpu', 1, false), null);
    assert.match(cpuGraphBlocker(model, 'cpu', 2, false) ?? '', /batch > 1/);
    assert.match(cpuGraphBlocker(model, 'cpu', 1, true) ?? '', /padded/);
    assert.match(cpuGraphBlocker(model, 'cuda', 1, false) ?? '', /not on the cpu backend/);
    withEnv('KESTREL_CPU_GRAPHS', '0', () => assert.match(cpuGraphBlocker(model, 'cpu', 1, false) ?? '', /KESTREL_CPU_GRAPHS=0/));
    // the profiler times kernels one by one: under it every step runs op by op, and all are counted
    const eager = await decode(model, { temperature: 0, maxNewTokens: 8 }, false);
    k.profile.start();
    const before = CpuGraphDecoder.built;
    const profiled = await decode(model, { temperature: 0, maxNewTokens: 8 }, true);
    const prof = k.profile.stop();
    assert.equal(CpuGraphDecoder.built, before, 'no graph while profiling');
    assertSame(profiled, eager, 'profiled');
    const attention = prof.kernels.filter((r) => r.name.startsWith('attention')).reduce((n, r) => n + r.calls, 0);
    assert.equal(attention, 8 * model.config.numLayers, 'every step\'s attention calls were timed (prefill and 7 decode steps)');
    // a graph built before the profiler started: its replays are timed call by call natively, as
    // '<kernel> (replayed)' rows (the first step checks the kept graph op by op, before the profiler)
    await decode(model, { temperature: 0, maxNewTokens: 8 }, true);
    const replayed = await withEnv('KESTREL_CPU_GRAPHS', '1', async () => {
      const ids = k.tensor([[3, 17, 42, 7, 99]], { dtype: 'int64' });
      let steps = 0;
      const out = await model.generate(ids, { temperature: 0, maxNewTokens: 8, eosTokenId: [], onScores: () => void (++steps === 2 && k.profile.start()) });
      const r = { ids: out.toArray() as number[][], prof: k.profile.stop() };
      ids.dispose(), out.dispose();
      return r;
    });
    assert.deepEqual(replayed.ids, eager.ids, 'profiled replays: ids');
    const attentionRows = replayed.prof.kernels.filter((r) => r.name.startsWith('attention'));
    assert.deepEqual(attentionRows.map((r) => r.name), ['attention (replayed)'], 'every timed step was a replay');
    const replays = attentionRows[0].calls / model.config.numLayers;
    assert.equal(replays, 6, 'the 6 decode steps after the checked one');
    for (const r of replayed.prof.kernels.filter((r) => r.name.endsWith('(replayed)'))) {
      assert.equal(r.calls % replays, 0, `${r.name}: the same calls every replay`);
      assert.ok(r.ms > 0 && r.ms <= replayed.prof.wallMs, `${r.name}: ${r.ms} ms within the ${replayed.prof.wallMs} ms profiled`);
    }
    // a left-padded batch of two still equals its rows decoded alone (the plain path)
    const built = CpuGraphDecoder.built;
    const ids = k.tensor([[3, 17, 42], [0, 5, 9]], { dtype: 'int64' });
    const out = await model.generate(ids, { maxNewTokens: 6, temperature: 0, eosTokenId: [], attentionMask: k.tensor([[1, 1, 1], [0, 1, 1]], { dtype: 'int64' }) });
    assert.equal(CpuGraphDecoder.built, built, 'no graph for a batch');
    for (const t of [ids, out]) t.dispose();
    moe.dispose();
    model.dispose();
  });
});

describe('CPU graph recording (graph.ts)', { skip }, () => {
  const addon = (): NonNullable<ReturnType<typeof loadNative>> => loadNative()!;
  // a toy "step" at position p: out = 2 * x[p:p+2] + y, through a narrowed view (its offset moves with p)
  const x = (): k.Tensor => k.arange(0, 64, 1, { dtype: 'float32' });
  const step = (xs: k.Tensor, out: k.Tensor, p: number, offset = p): k.Tensor =>
    k.tidy(() => {
      const y = k.full([2], 0.5);
      k.copy_(out, k.add(k.mul(k.narrow(xs, 0, offset, 2), 2), y));
      return out;
    });

  function recordThree(xs: k.Tensor, out: k.Tensor, offsetOf: (p: number) => number, extra?: (p: number) => void): { pool: PoolEntry[]; recs: Recording[] } {
    const pool: PoolEntry[] = [];
    const recs = [0, 1, 2].map((p) => {
      const rec = new Recording(pool, p === 0);
      record(rec, () => {
        step(xs, out, p, offsetOf(p));
        extra?.(p);
      });
      return rec;
    });
    return { pool, recs };
  }

  test('an affine step replays at later positions; its outputs equal running the step', () => {
    const [xs, out] = [x(), k.zeros([2])];
    const before = k.memory.stats('cpu').current.total;
    const { pool, recs } = recordThree(xs, out, (p) => p);
    const g = CpuGraph.build(addon(), pool, recs as [Recording, Recording, Recording]);
    assert.ok(g instanceof CpuGraph, String(g));
    assert.ok(g.patches >= 1, 'the narrowed offset moves');
    for (const p of [3, 10, 62]) {
      g.replay(p);
      assert.deepEqual([...out.toFloat32Array()], [2 * p + 0.5, 2 * p + 2.5], `position ${p}`);
    }
    g.dispose();
    assert.equal(k.memory.stats('cpu').current.total, before, 'the pool is released');
    // past the end of x the native view check refuses the call (never reads out of bounds)
    const { pool: p2, recs: r2 } = recordThree(xs, out, (p) => p);
    const g2 = CpuGraph.build(addon(), p2, r2 as [Recording, Recording, Recording]) as CpuGraph;
    assert.throws(() => g2.replay(63), /kestrel native/);
    g2.dispose();
    for (const t of [xs, out]) t.dispose();
  });

  test('what a replay could not reproduce stops the graph with its reason, and the steps still ran', () => {
    const [xs, out] = [x(), k.zeros([2])];
    const before = k.memory.stats('cpu').current.total;
    // an offset that moves p² is not affine
    let r = recordThree(xs, out, (p) => p * p);
    assert.match(String(CpuGraph.build(addon(), r.pool, r.recs as [Recording, Recording, Recording])), /does not move by a fixed step/);
    assert.deepEqual([...out.toFloat32Array()], [8.5, 10.5], 'the last recorded step (offset 4) ran');
    // a number that is not a view's extent changes (the fill value)
    r = recordThree(xs, out, (p) => p, (p) => k.tidy(() => void k.fill_(k.zeros([3]), p)));
    assert.match(String(CpuGraph.build(addon(), r.pool, r.recs as [Recording, Recording, Recording])), /not a view's offset, shape or stride/);
    // an upload whose data changes, and a read back
    r = recordThree(xs, out, (p) => p, (p) => k.tidy(() => void k.tensor([p, 1])));
    assert.match(r.recs[1].failure ?? '', /uploads data that changes/);
    releasePool(r.pool);
    r = recordThree(xs, out, (p) => p, () => k.tidy(() => k.sum(out).item()));
    assert.match(r.recs[0].failure ?? '', /reads a value back/);
    releasePool(r.pool);
    // a different sequence of allocations
    r = recordThree(xs, out, (p) => p, (p) => k.tidy(() => void (p ? k.zeros([5]) : k.zeros([4]))));
    assert.match(r.recs[1].failure ?? '', /allocation \d+ of the step is float32\[5\] where the first recorded step made float32\[4\]/);
    releasePool(r.pool);
    assert.equal(k.memory.stats('cpu').current.total, before, 'every pool released');
    for (const t of [xs, out]) t.dispose();
  });

  test('the native replay refuses a malformed program', () => {
    const a = addon();
    assert.throws(() => a.runProgram(Float64Array.from([1e9, 0]), new Int32Array(0), new Float64Array(0), 0), /bad kernel id/);
    assert.throws(() => a.runProgram(Float64Array.from([0, 5, 1]), new Int32Array(0), new Float64Array(0), 0), /bad kernel id or argument count/);
    assert.throws(() => a.runProgram(new Float64Array(0), Int32Array.from([3]), Float64Array.from([1]), 1), /patch points past/);
    assert.throws(() => a.runProgram(new Float64Array(0), Int32Array.from([3, 4]), Float64Array.from([1]), 1), /differ in length/);
  });
});
