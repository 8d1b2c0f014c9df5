// Optimizer in backward against the ordinary step on a small Llama: the same float32 weights bit
// for bit after several steps (AdamW, SGD with momentum, Lion; decay groups; a schedule; tied
// embeddings; activation checkpointing), one parameter's gradient held at a time, and the
// multi-tensor AdamW kernel bit-identical to one call per tensor on every backend.
import { ALL_DEVICES, skipUnless } from '../devices.js';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { decoderConfig } from '../../src/models/registry.js';
import { Packer } from '../../src/backend/cpu/native.js';
import { loadNative } from '../../src/backend/addon.js';
import type { AdamWTensors } from '../../src/backend/kernels.js';

const { AdamW, SGD, Lion, OptimizerInBackward, schedules } = k.optim;

function llama(extra: Record<string, unknown> = {}): k.CausalLM {
  k.manualSeed(5);
  return new k.CausalLM(decoderConfig({
    model_type: 'llama', vocab_size: 40, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 32, ...extra,
  }, 'test config'));
}

/** Deterministic batches (rows of 10 tokens, every 4th label ignored) for step s. */
function batch(s: number): k.data.Batch {
  const rows = [0, 1, 2].map((r) => Array.from({ length: 10 }, (_, t) => (s * 7 + r * 11 + t * 3) % 40));
  return { inputIds: rows, labels: rows.map((row) => row.map((x, t) => (t % 4 === 3 ? -100 : x))), attentionMask: rows.map((row) => row.map(() => 1)) };
}

type MakeOpt = (model: k.CausalLM) => k.optim.Optimizer<{ lr: number }>;
const OPTIMIZERS: [string, MakeOpt][] = [
  ['AdamW', (m) => new AdamW(k.train.decayParamGroups(m, 0.1), { lr: 1e-2 })],
  ['SGD with momentum', (m) => new SGD(k.train.decayParamGroups(m, 0.05), { lr: 5e-2, momentum: 0.9, dampening: 0.1, nesterov: false })],
  ['Lion', (m) => new Lion(k.train.decayParamGroups(m, 0.1), { lr: 1e-3, betas: [0.9, 0.99] })],
];
const schedule = schedules.cosine(1e-2, 1, 4);

/** Trains `steps` steps; returns every parameter's bits and each step's grad-tag peak. */
function run(make: MakeOpt, inBackward: boolean, o: { steps?: number; model?: () => k.CausalLM } = {}): { weights: Float32Array[]; gradPeaks: number[] } {
  const model = (o.model ?? llama)();
  const opt = make(model);
  const iob = inBackward ? new OptimizerInBackward(opt) : null;
  const gradPeaks: number[] = [];
  for (let s = 0; s < (o.steps ?? 4); s++) {
    const lr0 = opt.groups.map((g) => g.options.lr);
    opt.setLr((i) => lr0[i] * (schedule(s) / 1e-2));
    k.memory.resetPeak();
    const before = k.memory.stats().current.grad;
    if (iob) iob.step(() => k.train.accumulateGradients(model, [batch(s)]));
    else {
      k.train.accumulateGradients(model, [batch(s)]);
      opt.step();
      opt.zeroGrad();
    }
    gradPeaks.push(k.memory.stats().peak.grad - before);
    opt.setLr((i) => lr0[i]);
  }
  const weights = model.parameters().map((p) => p.toFloat32Array());
  iob?.dispose();
  opt.dispose();
  model.dispose();
  return { weights, gradPeaks };
}

function assertSameBits(a: Float32Array[], b: Float32Array[], what: string): void {
  assert.equal(a.length, b.length);
  a.forEach((x, i) => {
    const [u, v] = [new Uint32Array(x.buffer, x.byteOffset, x.length), new Uint32Array(b[i].buffer, b[i].byteOffset, b[i].length)];
    const j = u.findIndex((bits, e) => bits !== v[e]);
    assert.equal(j, -1, `${what}: parameter ${i} differs first at element ${j}: ${x[j]} vs ${b[i][j]}`);
  });
}

describe('optimizer in backward equals the ordinary step', () => {
  // The arithmetic is the same (stepParam runs update(), the kernels of step()), and no backward
  // node reads a weight after that weight's gradient is final, so fp32 results are bit-identical.
  for (const [name, make] of OPTIMIZERS)
    test(`${name}: 4 steps, decay groups, cosine schedule: same bits`, () => {
      const ordinary = run(make, false);
      const fused = run(make, true);
      assertSameBits(fused.weights, ordinary.weights, name);
      const init = run(make, false, { steps: 0 });
      assert.ok(init.weights.every((w, i) => w.some((x, e) => x !== ordinary.weights[i][e])), 'every parameter moved');
    });

  test('tied embeddings (a parameter used twice) and full activation checkpointing: same bits', () => {
    for (const model of [() => llama({ tie_word_embeddings: true }), () => Object.assign(llama(), { checkpointing: 'full' as const })]) {
      const ordinary = run(OPTIMIZERS[0][1], false, { model, steps: 3 });
      const fused = run(OPTIMIZERS[0][1], true, { model, steps: 3 });
      assertSameBits(fused.weights, ordinary.weights, 'AdamW');
    }
  });

  test('the grad tag holds one parameter at a time (the ordinary step holds all of them)', () => {
    const model = llama();
    const bytes = model.parameters().map((p) => p.numel * 4);
    model.dispose();
    const all = bytes.reduce((a, b) => a + b, 0);
    const largest = Math.max(...bytes);
    const ordinary = run(OPTIMIZERS[0][1], false, { steps: 2 });
    const fused = run(OPTIMIZERS[0][1], true, { steps: 2 });
    // every parameter gets a float32 gradient that stays until the step: the peak is their sum
    for (const peak of ordinary.gradPeaks) assert.equal(peak, all);
    // each gradient is freed by its hook before the next one is final
    for (const peak of fused.gradPeaks) assert.ok(peak > 0 && peak <= largest, `grad peak ${peak} > largest parameter ${largest} B (all: ${all} B)`);
    assert.equal(k.memory.stats().current.grad, 0, 'no gradient left behind');
  });

  test('hooks act only inside step(); a second gradient for an updated parameter is an error', () => {
    const model = llama();
    const opt = new AdamW(model.parameters(), { lr: 1e-2 });
    const iob = new OptimizerInBackward(opt);
    k.train.accumulateGradients(model, [batch(0)]); // outside step(): the ordinary .grad
    assert.ok(model.parameters().every((p) => p.grad !== null) && opt.stepCount === 0);
    opt.zeroGrad();
    assert.throws(() => iob.step(() => {
      k.train.accumulateGradients(model, [batch(0)]);
      k.train.accumulateGradients(model, [batch(1)]);
    }), /received a second gradient in one step after its update had run/);
    iob.dispose();
    opt.dispose();
    model.dispose();
  });
});

for (const backend of ['ref', ...ALL_DEVICES] as const) {
  describe(`multi-tensor AdamW (${backend})`, { skip: backend === 'ref' ? false : skipUnless(backend) }, () => {
    // sizes around the cpu kernel's 32768-element grain and cuda's 65536-element chunks, a scalar and an empty tensor
    const SIZES = [1, 7, 0, 33, 32768, 32769, 65536 + 3, 100, 3];

    type Group = (AdamWTensors & Record<'param' | 'grad' | 'expAvg' | 'expAvgSq', k.Tensor>)[];
    function tensors(seed: number): Group {
      k.manualSeed(seed);
      return SIZES.map((n) => {
        const make = (scale: number, abs = false) => {
          const t = k.keep(k.randn([n], { backend }));
          return abs ? k.keep(k.tidy(() => k.mul(k.unary('abs', t), scale))) : t;
        };
        return { param: make(1), grad: make(1), expAvg: make(0.1), expAvgSq: make(0.01, true) };
      });
    }
    const bits = (ts: Group) => ts.flatMap((t) => [t.param, t.expAvg, t.expAvgSq].map((x) => new Uint32Array(x.toFloat32Array().buffer)));

    test('one call for the group equals one call per tensor, bit for bit', () => {
      const step = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, bc1: 1 - 0.9 ** 3, bc2: 1 - 0.999 ** 3 };
      const kernels = k.getBackend(backend).kernels;
      const [grouped, single] = [tensors(3), tensors(3)];
      kernels.adamw(grouped, step);
      for (const t of single) kernels.adamw([t], step);
      const [a, b] = [bits(grouped), bits(single)];
      a.forEach((x, i) => assert.deepEqual(x, b[i], `tensor ${Math.floor(i / 3)} (${SIZES[Math.floor(i / 3)]} elements) ${['param', 'exp_avg', 'exp_avg_sq'][i % 3]}`));
      assert.ok(a[0][0] !== new Uint32Array(tensors(3)[0].param.toFloat32Array().buffer)[0], 'the step changed the weights');
      for (const t of [...grouped, ...single]) for (const x of Object.values(t)) x.dispose();
    });
  });
}

describe('squaredNormConsuming: the norm term without a gradient-sized temporary', () => {
  for (const backend of ['ref', ...(k.hasBackend('cpu') ? ['cpu'] : [])] as k.BackendName[])
    test(`${backend}: equals gradSquaredNorm bit for bit on odd sizes; holds nothing new`, () => {
      for (const n of [1, 7, 33, 257, 257 * 33]) {
        const vals = Array.from({ length: n }, (_, i) => Math.sin(i * 1.7) * (1 + (i % 5)));
        const g = k.tensor(vals, { shape: [n], dtype: 'float32', backend });
        const copy = k.tensor(vals, { shape: [n], dtype: 'float32', backend });
        const want = k.optim.gradSquaredNorm(copy);
        k.memory.resetPeak();
        const before = k.memory.stats().current.total;
        const got = k.optim.squaredNormConsuming(g);
        // the scalar result (and the float64 accumulator of the ref backend) only; not n floats
        assert.ok(k.memory.stats().peak.total - before <= 64, `n ${n}: peak +${k.memory.stats().peak.total - before} bytes`);
        assert.equal(got, want, `n ${n}`);
        for (const t of [g, copy]) t.dispose();
      }
    });

  test('a view or a shared buffer is left as it is (the ordinary way)', () => {
    const base = k.tensor([1, 2, 3, 4, 5, 6], { shape: [2, 3], dtype: 'float32', backend: 'ref' });
    const view = base.transpose(0, 1);
    assert.equal(k.optim.squaredNormConsuming(view), 91);
    assert.deepEqual(base.toArray(), [[1, 2, 3], [4, 5, 6]]);
    for (const t of [view, base]) t.dispose();
  });
});

describe('multi-tensor AdamW (cpu, native checks)', { skip: skipUnless('cpu') }, () => {
  test('more tensors than one call carries (about 450) are split over calls, same bits', () => {
    const make = () => {
      k.manualSeed(9);
      return Array.from({ length: 1000 }, (_, i) => {
        const p = k.keep(k.randn([1 + (i % 5)], { requiresGrad: true }));
        p.grad = k.keep(k.randn([1 + (i % 5)]));
        return p;
      });
    };
    const [ps, qs] = [make(), make()];
    const [a, b] = [new AdamW(ps, { lr: 1e-2 }), new AdamW(qs, { lr: 1e-2 })];
    a.step(); // one group of 1000 tensors
    b.beginStep();
    for (const q of qs) b.stepParam(q); // one native call each
    ps.forEach((p, i) => assert.deepEqual(p.toFloat32Array(), qs[i].toFloat32Array(), `tensor ${i}`));
    for (const p of [...ps, ...qs]) (p.zeroGrad(), p.dispose());
    a.dispose();
    b.dispose();
  });

  test('the kernel checks every buffer against its storage before touching memory', () => {
    const addon = loadNative()!;
    const small = k.zeros([10]);
    const big = k.zeros([100]);
    const handle = (t: k.Tensor) => (t.storage as unknown as { handle: number }).handle;
    const p = new Packer(addon);
    const call = (n: number, offset: number) => {
      p.num(1).num(1e-3).num(0.9).num(0.999).num(1e-8).num(0).num(0.1).num(0.001).num(n);
      for (const t of [big, big, big, small]) p.num(handle(t)).num(offset);
      p.call('adamw');
    };
    assert.throws(() => call(100, 0), /tensor 0's exp_avg_sq of 100 float32 elements at offset 0 reaches past its storage of 40 bytes/);
    assert.throws(() => call(10, 1), /exp_avg_sq of 10 float32 elements at offset 1 reaches past/);
    assert.throws(() => call(-1, 0), /param of -1 float32 elements/);
    assert.deepEqual([...big.toFloat32Array()].filter((x) => x !== 0), [], 'nothing was written');
    small.dispose();
    big.dispose();
  });
});
