// The fused LoRA op and its shared-input groups against the composite they equal (forward and every
// gradient, float32, odd shapes, non-contiguous x, bias, dropout with one seed both ways, autocast),
// finite differences in float64 on the reference backend, a non-Linear frozen base, and memory.
import { skipUnless } from '../devices.js';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { type LoraProjection, loraComposite, loraLinear, loraLinearGroup } from '../../src/lora/fused_lora.js';
import { assertClose, gradcheck, hasCpu, refLeaf, seeded, seededTensor } from '../helpers.js';

type Backend = 'cpu' | 'ref';
const backend: Backend = hasCpu() ? 'cpu' : 'ref';

interface Spec {
  inF: number;
  outF: number;
  r: number;
  bias?: boolean;
  scaling?: number;
  dropout?: number;
}

/** A frozen seeded Linear with trainable seeded A and B (B non-zero, so every gradient is exercised). */
function projection(s: Spec, seed: number, be: Backend | 'cuda' = backend, dtype: k.DType = 'float32'): LoraProjection {
  const base = new k.nn.Linear(s.inF, s.outF, { backend: be, bias: s.bias ?? false });
  if (dtype !== 'float32') base.to(dtype);
  k.nn.init.normal_(base.weight, 0.2);
  base.requiresGrad_(false);
  const A = k.keep(seededTensor([s.r, s.inF], dtype, be, seed, -0.5, 0.5)).requiresGrad_();
  const B = k.keep(seededTensor([s.outF, s.r], dtype, be, seed + 1, -0.5, 0.5)).requiresGrad_();
  return { base, A, B, scaling: s.scaling ?? 2, dropout: s.dropout ?? 0 };
}

/** Outputs and every gradient of sum_i <f(x)_i, w_i> (seeded weights, so each element counts). */
function run(x: k.Tensor, xLeaf: k.Tensor, ps: LoraProjection[], f: (x: k.Tensor) => k.Tensor[]): k.Tensor[] {
  for (const t of [xLeaf, ...ps.flatMap((p) => [p.A, p.B, p.base.bias])]) t?.zeroGrad();
  const outs = k.tidy(() => {
    const ys = f(x);
    let loss: k.Tensor | null = null;
    ys.forEach((y, i) => {
      const w = k.tensor(seeded(y.numel, 50 + i), { shape: [...y.shape], backend: y.backendName }).to(y.dtype);
      const term = y.mul(w).sum();
      loss = loss ? loss.add(term) : term;
    });
    loss!.backward();
    return ys.map((y) => k.noGrad(() => y.to('float32')));
  });
  const grads = [xLeaf.grad!, ...ps.flatMap((p) => [p.A.grad!, p.B.grad!, ...(p.base.bias?.requiresGrad ? [p.base.bias.grad!] : [])])];
  return [...outs, ...grads.map((g) => k.noGrad(() => g.clone()))];
}

function compare(got: k.Tensor[], want: k.Tensor[], tol: number, what: string): void {
  assert.equal(got.length, want.length);
  got.forEach((g, i) => assertClose(g, want[i], { atol: tol, rtol: tol, what: `${what} #${i}` }));
}

const SHAPES: [number, Spec][] = [
  [1, { inF: 7, outF: 33, r: 1 }],
  [7, { inF: 33, outF: 7, r: 5, bias: true }],
  [33, { inF: 257, outF: 33, r: 16 }],
  [7, { inF: 33, outF: 257, r: 7, bias: true, scaling: 0.5 }],
];

test('fused LoRA equals the composite: forward and dx, dA, dB, db (odd shapes, non-contiguous x)', () => {
  for (const [T, s] of SHAPES) {
    const p = projection(s, T + s.r);
    const xLeaf = k.keep(seededTensor([s.inF, 2 * T], 'float32', backend, 3)).requiresGrad_();
    // x [2, T, in] as a transposed view: the op must not assume a contiguous input
    const view = (): k.Tensor => k.reshape(k.transpose(xLeaf, 0, 1), [2, T, s.inF]);
    const fused = run(xLeaf, xLeaf, [p], () => [loraLinear(view(), p)]);
    const composite = run(xLeaf, xLeaf, [p], () => [loraComposite(view(), p)]);
    assert.deepEqual([...fused[0].shape], [2, T, s.outF]);
    compare(fused, composite, 1e-5, `T=${T} in=${s.inF} out=${s.outF} r=${s.r}`);
    assert.equal((p.base as k.nn.Linear).weight.grad, null, 'the frozen base weight gets no gradient');
  }
});

test('fused LoRA with dropout draws the same mask as the composite (one seed) and regenerates it in backward', () => {
  const s: Spec = { inF: 33, outF: 7, r: 4, dropout: 0.3, bias: true };
  const p = projection(s, 9);
  const xLeaf = k.keep(seededTensor([7, 33], 'float32', backend, 4)).requiresGrad_();
  const gen = new k.Generator(0);
  const at = (f: typeof loraLinear) => (): k.Tensor[] => {
    gen.manualSeed(11);
    return [f(xLeaf, p, { generator: gen, training: true })];
  };
  const fused = run(xLeaf, xLeaf, [p], at(loraLinear));
  const composite = run(xLeaf, xLeaf, [p], at(loraComposite));
  compare(fused, composite, 1e-5, 'dropout');
  // the mask really drops: without it the output differs
  const plain = k.tidy(() => k.noGrad(() => loraLinear(xLeaf, p, { training: false })));
  assert.ok(plain.sub(fused[0]).abs().max().item() > 1e-3, 'dropout changed the adapter output');
});

test('fused LoRA gradients match finite differences (float64, reference backend, bias, dropout)', () => {
  k.tidy(() => {
    const base = new k.nn.Linear(5, 4, { backend: 'ref' }).to('float64');
    base.requiresGrad_(false);
    const x = refLeaf([3, 5], 1);
    const [A, B, b] = [refLeaf([2, 5], 2), refLeaf([4, 2], 3), refLeaf([4], 4)];
    const gen = new k.Generator(0);
    gradcheck((xx, a, bb, bias) => {
      base.bias = bias;
      gen.manualSeed(3); // the same mask at every evaluation, so the function is smooth
      return loraLinear(xx, { base, A: a, B: bb, scaling: 1.5, dropout: 0.25 }, { generator: gen });
    }, [x, A, B, b], { what: 'fused lora' });
    assert.equal(base.weight.grad, null);
  });
});

test('a shared-input group equals separate LoRA ops: outputs, one dx, stacked dA (cpu, float32)', () => {
  const specs: Spec[] = [{ inF: 33, outF: 33, r: 8 }, { inF: 33, outF: 7, r: 3, bias: true, scaling: 0.75 }, { inF: 33, outF: 7, r: 16 }];
  const ps = specs.map((s, i) => projection(s, 20 + 3 * i));
  const xLeaf = k.keep(seededTensor([2, 7, 33], 'float32', backend, 5)).requiresGrad_();
  const group = run(xLeaf, xLeaf, ps, (x) => loraLinearGroup(x, ps));
  const separate = run(xLeaf, xLeaf, ps, (x) => ps.map((p) => loraLinear(x, p)));
  const composite = run(xLeaf, xLeaf, ps, (x) => ps.map((p) => loraComposite(x, p)));
  compare(group, separate, 1e-5, 'group vs separate');
  compare(group, composite, 1e-5, 'group vs composite');
});

test('a group with per-projection dropout and an unused output matches the composite', () => {
  const specs: Spec[] = [{ inF: 33, outF: 7, r: 2, dropout: 0.2 }, { inF: 33, outF: 9, r: 3 }, { inF: 33, outF: 7, r: 4, dropout: 0.5 }];
  const ps = specs.map((s, i) => projection(s, 40 + 3 * i));
  const xLeaf = k.keep(seededTensor([7, 33], 'float32', backend, 6)).requiresGrad_();
  const gen = new k.Generator(0);
  const both = (f: (x: k.Tensor) => k.Tensor[]) => (x: k.Tensor): k.Tensor[] => {
    gen.manualSeed(5);
    return f(x);
  };
  const group = run(xLeaf, xLeaf, ps, both((x) => loraLinearGroup(x, ps, { generator: gen })));
  const composite = run(xLeaf, xLeaf, ps, both((x) => ps.map((p) => loraComposite(x, p, { generator: gen }))));
  compare(group, composite, 1e-5, 'group with dropout');
  // only the second output reaches the loss: the others' adapters get no gradient, as with separate ops
  for (const p of ps) for (const t of [p.A, p.B]) t.zeroGrad();
  k.tidy(() => loraLinearGroup(xLeaf, ps, { generator: gen })[1].sum().backward());
  assert.equal(ps[0].A.grad, null);
  assert.equal(ps[2].B.grad, null);
  assert.ok(ps[1].A.grad && ps[1].B.grad);
});

test('group gradients match finite differences (float64, reference backend)', () => {
  k.tidy(() => {
    const bases = [new k.nn.Linear(4, 3, { backend: 'ref' }).to('float64'), new k.nn.Linear(4, 5, { backend: 'ref', bias: false }).to('float64')];
    for (const b of bases) b.requiresGrad_(false);
    const x = refLeaf([2, 3, 4], 1);
    const ins = [refLeaf([2, 4], 2), refLeaf([3, 2], 3), refLeaf([1, 4], 4), refLeaf([5, 1], 5)];
    gradcheck((xx, a1, b1, a2, b2) => {
      const [y1, y2] = loraLinearGroup(xx, [{ base: bases[0], A: a1, B: b1, scaling: 2, dropout: 0 }, { base: bases[1], A: a2, B: b2, scaling: 0.5, dropout: 0 }]);
      return k.cat([y1, y2], -1);
    }, [x, ...ins], { what: 'lora group' });
  });
});

/** A frozen base that is not a Linear (the shape of a 4-bit QuantLinear): only the two products. */
class ProductsOnly extends k.nn.Module implements k.nn.FrozenLinear {
  bias: k.Tensor | null;
  constructor(readonly w: k.Tensor, bias: k.Tensor | null) {
    super();
    this.bias = bias;
  }
  get inFeatures(): number {
    return this.w.shape[1];
  }
  get outFeatures(): number {
    return this.w.shape[0];
  }
  applyWeight(x: k.Tensor): k.Tensor {
    return k.noGrad(() => k.matmul(x, k.transpose(this.w)));
  }
  applyWeightTransposed(g: k.Tensor): k.Tensor {
    return k.noGrad(() => k.matmul(g, this.w));
  }
  /** what the composite calls: differentiable in x (the weight is frozen) */
  forward(x: k.Tensor): k.Tensor {
    return k.linear(x, this.w, this.bias);
  }
}

test('any FrozenLinear base works (QLoRA shape): equals the same adapter on a Linear with that weight', () => {
  const s: Spec = { inF: 33, outF: 7, r: 4, bias: true };
  const onLinear = projection(s, 60);
  const lin = onLinear.base as k.nn.Linear;
  const other: LoraProjection = { ...onLinear, base: new ProductsOnly(lin.weight, lin.bias) };
  const xLeaf = k.keep(seededTensor([2, 7, 33], 'float32', backend, 7)).requiresGrad_();
  const ps = [onLinear, other];
  compare(run(xLeaf, xLeaf, ps, (x) => loraLinearGroup(x, ps)), run(xLeaf, xLeaf, ps, (x) => ps.map((p) => loraComposite(x, p))), 1e-5, 'FrozenLinear base');
});

test('autocast bf16: half outputs, float32 master gradients, close to the composite under autocast', () => {
  const s: Spec = { inF: 33, outF: 7, r: 4, bias: true };
  const ps = [projection(s, 70), projection({ ...s, outF: 9 }, 80)];
  const xLeaf = k.keep(seededTensor([7, 33], 'float32', backend, 8)).requiresGrad_();
  const fused = run(xLeaf, xLeaf, ps, (x) => k.autocast('bfloat16', () => {
    const ys = loraLinearGroup(x, ps);
    assert.equal(ys[0].dtype, 'bfloat16');
    return ys;
  }));
  const composite = run(xLeaf, xLeaf, ps, (x) => k.autocast('bfloat16', () => ps.map((p) => loraComposite(x, p))));
  for (const p of ps) assert.equal(p.A.grad!.dtype, 'float32');
  compare(fused, composite, 3e-2, 'autocast');
});

// On the GPU under autocast the fused op multiplies in bf16 (cuBLASLt), writing the adapters'
// gradients in float32: the same values as the cpu's float32 compute of the bf16 inputs within
// bf16 rounding of the intermediate products (3e-2, as above).
test('autocast bf16 on cuda: bf16 products, float32 adapter gradients, equal to the cpu within bf16 rounding', { skip: skipUnless('cuda') || skipUnless('cpu') }, () => {
  const s: Spec = { inF: 33, outF: 7, r: 4, bias: true };
  const results = (['cpu', 'cuda'] as const).map((be) => {
    k.manualSeed(123); // the same base weights on both devices
    const ps = [projection(s, 70, be), projection({ ...s, outF: 9 }, 80, be)];
    const xLeaf = k.keep(seededTensor([7, 33], 'float32', be, 8)).requiresGrad_();
    const r = run(xLeaf, xLeaf, ps, (x) => k.autocast('bfloat16', () => loraLinearGroup(x, ps)));
    if (be === 'cuda') for (const p of ps) assert.equal(p.A.grad!.dtype, 'float32');
    return r.map((t) => t.to('cpu'));
  });
  compare(results[1], results[0], 3e-2, 'autocast on cuda vs cpu');
});

test('forward saves only x and x Aᵀ: memory returns to its baseline after backward', () => {
  const s: Spec = { inF: 257, outF: 33, r: 4 };
  const ps = [projection(s, 90), projection(s, 91)];
  const x = k.keep(seededTensor([64, 257], 'float32', backend, 9)).requiresGrad_();
  const before = k.memory.stats().current.total;
  const saved = k.tidy(() => {
    const ys = loraLinearGroup(x, ps);
    const held = k.memory.stats().current.total - before;
    const sum = ys[0].sum().add(ys[1].sum());
    sum.backward();
    return held;
  });
  // live while the graph exists: the two outputs [64, 33] and the saved xs [64, 8] (x is the caller's)
  assert.equal(saved, 4 * (2 * 64 * 33 + 64 * 8));
  for (const t of [x, ...ps.flatMap((p) => [p.A, p.B])]) t.zeroGrad();
  assert.equal(k.memory.stats().current.total, before, 'every saved tensor was freed');
});

test('recompute: x rebuilt from the gate and up glu keeps gives identical gradients and holds no copy of x', () => {
  const p = projection({ inF: 33, outF: 7, r: 5, bias: true }, 71);
  const gate = k.keep(seededTensor([2, 7, 33], 'float32', backend, 72, -1, 1)).requiresGrad_();
  const up = k.keep(seededTensor([2, 7, 33], 'float32', backend, 73, -1, 1)).requiresGrad_();
  const rebuild = { from: [gate, up], fn: ([g, u]: k.Tensor[]) => k.glu(g, u, 'silu') };
  const grads = (recompute: boolean): k.Tensor[] => {
    for (const t of [gate, up, p.A, p.B, p.base.bias]) t?.zeroGrad();
    k.tidy(() => {
      const y = loraLinear(k.glu(gate, up, 'silu'), p, recompute ? { recompute: rebuild } : {});
      y.mul(k.tensor(seeded(y.numel, 74), { shape: [...y.shape], backend })).sum().backward();
    });
    return [gate.grad!, up.grad!, p.A.grad!, p.B.grad!].map((g) => k.noGrad(() => g.clone()));
  };
  const [want, got] = [grads(false), grads(true)];
  got.forEach((g, i) => assert.deepEqual(g.toFloat32Array(), want[i].toFloat32Array(), `gradient #${i} bit-identical`));
  // what stays alive between forward and backward: with recompute, glu's output is freed at once
  const live = (recompute: boolean): number => {
    const before = k.memory.stats().current.total;
    const y = k.tidy(() => loraLinear(k.glu(gate, up, 'silu'), p, recompute ? { recompute: rebuild } : {}));
    const held = k.memory.stats().current.total - before;
    y.dispose();
    return held;
  };
  assert.equal(live(false) - live(true), 2 * 7 * 33 * 4, 'exactly the [14, 33] float32 input less');
});
