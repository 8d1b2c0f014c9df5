// The fused attention op (src/ops/fused/attention.ts) against its definition, attentionComposite
// (naive softmax(q kᵀ scale + mask) v), on the reference backend in float64: outputs and the
// gradients of q, k, v through a weighted sum, over GQA/MQA, causal, padding masks (bool and
// additive, broadcast), sliding window, soft-capping, Tq != Tk (decode), dropout; finite-difference
// gradchecks of the fused op; bad shapes; and the O(T) memory claim at T = 512.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as k from '../../src/index.js';
import { assertClose, gradcheck, refLeaf, seeded } from '../helpers.js';

interface Case {
  name: string;
  B?: number;
  H?: number;
  Hkv?: number;
  Tq?: number;
  Tk?: number;
  hd?: number;
  hdv?: number;
  /** builds attention options (fresh generator per call so both paths draw the same mask) */
  opts?: () => k.AttentionOptions;
}

type Attn = (q: k.Tensor, kk: k.Tensor, v: k.Tensor, o: k.AttentionOptions) => k.Tensor;

/** out and the gradients of sum(out * w) with respect to q, k, v. */
function run(f: Attn, c: Case): Float64Array[] {
  const { B = 2, H = 2, Hkv = H, Tq = 5, Tk = Tq, hd = 4, hdv = hd } = c;
  const q = refLeaf([B, H, Tq, hd], 1);
  const kk = refLeaf([B, Hkv, Tk, hd], 2);
  const v = refLeaf([B, Hkv, Tk, hdv], 3);
  const w = k.tensor(seeded(B * H * Tq * hdv, 4), { shape: [B, H, Tq, hdv], dtype: 'float64', backend: 'ref' });
  const out = k.tidy(() => {
    const o = f(q, kk, v, c.opts?.() ?? {});
    o.mul(w).sum().backward();
    return o.toTypedArray() as Float64Array;
  });
  const res = [out, ...[q, kk, v].map((t) => t.grad!.toTypedArray() as Float64Array)];
  for (const t of [q, kk, v, w]) t.dispose();
  return res;
}

function compare(c: Case): void {
  const fused = run((q, kk, v, o) => k.scaledDotProductAttention(q, kk, v, o), c);
  const composite = run((q, kk, v, o) => k.attentionComposite(q, kk, v, o), c);
  ['out', 'dq', 'dk', 'dv'].forEach((what, i) =>
    assertClose(fused[i], composite[i], { atol: 1e-12, rtol: 1e-10, what: `${c.name}: ${what}` }));
}

const B = 2;
const padAdditive = (Tk: number): k.Tensor => {
  // batch 0 sees every key, batch 1 only the first Tk - 2: [B, 1, 1, Tk]
  const m = new Float64Array(B * Tk);
  for (let j = Tk - 2; j < Tk; j++) m[Tk + j] = -Infinity;
  return k.tensor(m, { shape: [B, 1, 1, Tk], dtype: 'float64', backend: 'ref' });
};
const padBool = (Tk: number): k.Tensor =>
  k.tensor(Array.from({ length: B * Tk }, (_, i) => !(i >= Tk && i % Tk >= Tk - 2)), { shape: [B, 1, 1, Tk], backend: 'ref' });

const cases: Case[] = [
  { name: 'plain' },
  { name: 'GQA H=4 Hkv=2', H: 4, Hkv: 2 },
  { name: 'MQA H=4 Hkv=1', H: 4, Hkv: 1 },
  { name: 'causal', opts: () => ({ causal: true }) },
  { name: 'causal GQA', H: 4, Hkv: 2, Tq: 7, opts: () => ({ causal: true }) },
  { name: 'padding mask (additive, [B,1,1,Tk])', Tq: 6, opts: () => ({ mask: padAdditive(6) }) },
  { name: 'padding mask (bool, [B,1,1,Tk])', Tq: 6, opts: () => ({ mask: padBool(6) }) },
  { name: 'padding mask + causal', Tq: 6, opts: () => ({ mask: padAdditive(6), causal: true }) },
  {
    name: 'full additive mask [B,H,Tq,Tk]',
    opts: () => ({ mask: k.tensor(seeded(B * 2 * 25, 9, -2, 2), { shape: [B, 2, 5, 5], dtype: 'float64', backend: 'ref' }) }),
  },
  { name: 'per-head mask [1,H,Tq,Tk]', opts: () => ({ mask: k.tensor(seeded(2 * 25, 10), { shape: [1, 2, 5, 5], dtype: 'float64', backend: 'ref' }) }) },
  { name: 'sliding window 3', Tq: 8, opts: () => ({ causal: true, window: 3 }) },
  { name: 'window without causal', Tq: 8, opts: () => ({ window: 3 }) },
  { name: 'softcap', opts: () => ({ softcap: 0.7, scale: 2 }) },
  { name: 'softcap + causal + mask', Tq: 6, opts: () => ({ softcap: 1.5, causal: true, mask: padAdditive(6) }) },
  { name: 'Tq < Tk causal (chunked prefill)', Tq: 3, Tk: 7, opts: () => ({ causal: true }) },
  { name: 'decode Tq=1', Tq: 1, Tk: 9, opts: () => ({ causal: true }) },
  { name: 'decode Tq=1 GQA window', Tq: 1, Tk: 9, H: 4, Hkv: 2, opts: () => ({ causal: true, window: 4 }) },
  { name: 'hdv != hd', hd: 4, hdv: 3, opts: () => ({ causal: true }) },
  { name: 'dropout', Tq: 6, opts: () => ({ dropout: 0.3, generator: new k.Generator(1234) }) },
  { name: 'dropout + causal + GQA', H: 4, Hkv: 2, Tq: 6, opts: () => ({ dropout: 0.5, causal: true, generator: new k.Generator(99) }) },
  { name: 'custom scale', opts: () => ({ scale: 0.3 }) },
];

for (const c of cases) test(`fused attention equals the composite: ${c.name}`, () => compare(c));

test('a query with no visible key gives 0 and no gradient (Tq > Tk, causal)', () => {
  // shift = Tk - Tq = -2: queries 0 and 1 see no key (the composite would give NaN there)
  const c: Case = { name: 'empty rows', B: 1, H: 1, Tq: 5, Tk: 3, opts: () => ({ causal: true }) };
  const [out, dq] = run((q, kk, v, o) => k.scaledDotProductAttention(q, kk, v, o), c);
  const hd = 4;
  for (let i = 0; i < 2 * hd; i++) {
    assert.equal(out[i], 0, `out[${i}]`);
    assert.equal(dq[i], 0, `dq[${i}]`);
  }
  assert.ok(out.slice(2 * hd).every(Number.isFinite));
  // the visible rows still match the composite
  const [outC] = run((q, kk, v, o) => k.attentionComposite(q, kk, v, o), c);
  assertClose(out.slice(2 * hd), outC.slice(2 * hd), { atol: 1e-12, rtol: 1e-10, what: 'visible rows' });
});

test('dropout draws advance the generator like the composite', () => {
  const g1 = new k.Generator(5);
  const g2 = new k.Generator(5);
  const [q, kk, v] = [refLeaf([1, 2, 4, 4], 1), refLeaf([1, 2, 4, 4], 2), refLeaf([1, 2, 4, 4], 3)];
  k.tidy(() => {
    k.scaledDotProductAttention(q, kk, v, { dropout: 0.2, generator: g1 });
    k.attentionComposite(q, kk, v, { dropout: 0.2, generator: g2 });
  });
  assert.deepEqual(g1.getState(), g2.getState());
  // a second call uses fresh counters: a different mask
  const a = k.tidy(() => k.scaledDotProductAttention(q, kk, v, { dropout: 0.5, generator: g1 }).toTypedArray());
  const b = k.tidy(() => k.scaledDotProductAttention(q, kk, v, { dropout: 0.5, generator: g1 }).toTypedArray());
  assert.notDeepEqual(a, b);
  for (const t of [q, kk, v]) t.dispose();
});

// ---------------------------------------------------------------- gradcheck (finite differences)

const gradcases: [string, number[], number[], () => k.AttentionOptions][] = [
  ['plain', [1, 2, 3, 3], [1, 2, 4, 3], () => ({})],
  ['causal GQA', [1, 2, 4, 3], [1, 1, 4, 3], () => ({ causal: true })],
  ['window + softcap', [1, 1, 5, 2], [1, 1, 5, 2], () => ({ causal: true, window: 2, softcap: 0.8 })],
  ['mask', [2, 1, 3, 2], [2, 1, 3, 2], () => ({ mask: k.tensor(seeded(2 * 9, 3), { shape: [2, 1, 3, 3], dtype: 'float64', backend: 'ref' }) })],
  ['dropout (fixed generator)', [1, 1, 3, 2], [1, 1, 4, 2], () => ({ dropout: 0.4, generator: new k.Generator(3) })],
];

for (const [name, qs, ks, opts] of gradcases)
  test(`gradcheck fused attention: ${name}`, () => {
    const q = refLeaf(qs, 11);
    const kk = refLeaf(ks, 12);
    const v = refLeaf(ks, 13);
    gradcheck((a, b, c) => k.scaledDotProductAttention(a, b, c, opts()), [q, kk, v], { what: name });
    for (const t of [q, kk, v]) t.dispose();
  });

// ---------------------------------------------------------------- errors

test('bad shapes throw an Error naming the op', () => {
  const t = (shape: number[]): k.Tensor => k.zeros(shape, { dtype: 'float64', backend: 'ref' });
  const bad: [string, () => unknown][] = [
    ['3-d q', () => k.scaledDotProductAttention(t([2, 3, 4]), t([1, 2, 3, 4]), t([1, 2, 3, 4]))],
    ['head dims differ', () => k.scaledDotProductAttention(t([1, 2, 3, 4]), t([1, 2, 3, 5]), t([1, 2, 3, 5]))],
    ['heads not a multiple', () => k.scaledDotProductAttention(t([1, 3, 3, 4]), t([1, 2, 3, 4]), t([1, 2, 3, 4]))],
    ['k/v lengths differ', () => k.scaledDotProductAttention(t([1, 2, 3, 4]), t([1, 2, 3, 4]), t([1, 2, 5, 4]))],
    ['batch differs', () => k.scaledDotProductAttention(t([2, 2, 3, 4]), t([1, 2, 3, 4]), t([1, 2, 3, 4]))],
    ['mask shape', () => k.scaledDotProductAttention(t([1, 2, 3, 4]), t([1, 2, 3, 4]), t([1, 2, 3, 4]), { mask: t([1, 1, 3, 2]) })],
    ['dropout 1', () => k.scaledDotProductAttention(t([1, 2, 3, 4]), t([1, 2, 3, 4]), t([1, 2, 3, 4]), { dropout: 1 })],
    ['negative window', () => k.scaledDotProductAttention(t([1, 2, 3, 4]), t([1, 2, 3, 4]), t([1, 2, 3, 4]), { window: -1 })],
  ];
  for (const [what, f] of bad) assert.throws(f, /scaledDotProductAttention/, what);
});

// ---------------------------------------------------------------- memory

/** Peak bytes above the starting level during forward + backward of f at [1, 2, T, 16]. */
function peakBytes(f: Attn, T: number, opts: k.AttentionOptions): number {
  const q = refLeaf([1, 2, T, 16], 1);
  const kk = refLeaf([1, 2, T, 16], 2);
  const v = refLeaf([1, 2, T, 16], 3);
  const g = k.tensor(seeded(2 * T * 16, 4), { shape: [1, 2, T, 16], dtype: 'float64', backend: 'ref' });
  const base = k.memory.stats().current.total;
  k.memory.resetPeak();
  k.tidy(() => f(q, kk, v, opts).backward(g));
  const peak = k.memory.stats().peak.total - base;
  for (const t of [q, kk, v, g]) t.dispose();
  return peak;
}

test('fused attention forward + backward holds O(T) extra memory (T = 512)', () => {
  const T = 512;
  const fused = peakBytes((q, kk, v, o) => k.scaledDotProductAttention(q, kk, v, o), T, { causal: true });
  const composite = peakBytes((q, kk, v, o) => k.attentionComposite(q, kk, v, o), T, { causal: true });
  const scores = 2 * T * T * 8; // one [B, H, T, T] float64 tensor
  // fused: out, lse, saved copies and the gradients, all [.., T, hd] or [.., T]
  assert.ok(fused < scores / 4, `fused peak ${fused} B should be far below one score matrix (${scores} B)`);
  assert.ok(composite >= scores, `composite peak ${composite} B holds at least one score matrix`);
  assert.ok(fused * 10 < composite, `fused ${fused} B vs composite ${composite} B`);
});
