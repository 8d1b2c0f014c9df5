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
      for (const o of opts) {
        const eager = await decode(model, o, false);
        const built = CpuGraphDecoder.built;
        const graph = await decode(model, o, true);
        // steps 1 (plain), 2-4 (recorded), 5-9 replayed: the graph was built and used
        assert.equal(CpuGraphDecoder.built, built + 1, `${name}: one graph built`);
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
