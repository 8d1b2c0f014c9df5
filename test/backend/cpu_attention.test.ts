// The native tiled attention (native/attention.cc) in float32 against the float64 reference
// backend (src/backend/ref/attention.ts, the naive formula), forward and backward through the
// public op (out.backward(g) runs attention_backward): T of 1, 7, 33, 257 with hd 8/16/64, GQA
// and MQA, padding / full / per-head masks (additive and bool), causal, sliding window,
// soft-capping, dropout, Tq != Tk (decode, chunked prefill, rows with no visible key), hdv != hd,
// non-contiguous q/k/v; the logsumexp; every gradient element written; bad arguments; and the
// O(T) memory of forward + backward against the composite at T = 512.
// Tolerance (float32 kernel vs float64 reference): rtol 1e-4, atol 1e-5.
// The AVX2 and scalar bodies run in child processes with KESTREL_SIMD set.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import * as k from '../../src/index.js';
import { loadNative, nativeLoadError } from '../../src/backend/addon.js';
import { assertClose, seeded, runChild } from '../helpers.js';

const HAS_CPU = k.hasBackend('cpu');
const skip = HAS_CPU ? false : `cpu backend not built (${nativeLoadError()})`;
const CHILD = process.env.KESTREL_ATTN_CHILD === '1';
const TOL = { atol: 1e-5, rtol: 1e-4 };

const hasKernels = (...names: string[]): boolean => names.every((n) => loadNative()?.kernels.includes(n) ?? false);

interface Pair {
  c: k.Tensor;
  r: k.Tensor;
}

/** The same float32-rounded values as a cpu float32 leaf and a ref float64 leaf. */
function pair(shape: number[], seed: number, lo = -1, hi = 1, grad = true): Pair {
  const f32 = Float32Array.from(seeded(shape.reduce((a, b) => a * b, 1), seed, lo, hi));
  return {
    c: k.tensor(f32, { shape, backend: 'cpu', requiresGrad: grad }),
    r: k.tensor(Float64Array.from(f32), { shape, dtype: 'float64', backend: 'ref', requiresGrad: grad }),
  };
}

const dispose = (...ps: (Pair | null | undefined)[]): void => {
  for (const p of ps) {
    if (!p) continue;
    for (const t of [p.c, p.r]) {
      t.zeroGrad();
      t.dispose();
    }
  }
};

interface Case {
  B?: number;
  H?: number;
  Hkv?: number;
  Tq: number;
  Tk?: number;
  hd: number;
  hdv?: number;
  causal?: boolean;
  window?: number;
  softcap?: number;
  scale?: number;
  dropout?: number;
  /** mask kind: additive padding [B,1,1,Tk], full additive [B,H,Tq,Tk] (or a transposed view of one),
   * per-head [1,H,Tq,Tk], bool padding */
  mask?: 'pad' | 'full' | 'fullT' | 'head' | 'bool';
  /** q/k/v given as transposed views of [B, T, H, hd] storage */
  strided?: boolean;
}

const label = (c: Case): string => JSON.stringify(c).replace(/"/g, '');

function makeMask(c: Case, B: number, H: number, Tk: number, backend: 'cpu' | 'ref'): k.Tensor | undefined {
  const Tq = c.Tq;
  const dtype = backend === 'cpu' ? 'float32' : 'float64';
  const arr = (n: number, f: (i: number) => number) => {
    const a = Float32Array.from({ length: n }, (_, i) => f(i));
    return backend === 'cpu' ? a : Float64Array.from(a);
  };
  // batch b keeps the first Tk - b keys (at least one)
  const keepPad = (i: number) => i % Tk < Math.max(1, Tk - Math.floor(i / Tk));
  switch (c.mask) {
    case 'pad':
      return k.tensor(arr(B * Tk, (i) => (keepPad(i) ? 0 : -Infinity)), { shape: [B, 1, 1, Tk], dtype, backend });
    case 'bool':
      return k.tensor(Array.from({ length: B * Tk }, (_, i) => keepPad(i)), { shape: [B, 1, 1, Tk], backend });
    case 'full': {
      const s = seeded(B * H * Tq * Tk, 21, -2, 2);
      return k.tensor(arr(s.length, (i) => (i % 11 === 5 ? -Infinity : s[i])), { shape: [B, H, Tq, Tk], dtype, backend });
    }
    case 'fullT': {
      // a transposed view: the kernel reads the mask through its strides
      const s = seeded(B * H * Tq * Tk, 23, -2, 2);
      const base = k.tensor(arr(s.length, (i) => s[i]), { shape: [B, H, Tk, Tq], dtype, backend });
      return base.transpose(2, 3);
    }
    case 'head': {
      const s = seeded(H * Tq * Tk, 22, -1, 1);
      return k.tensor(arr(s.length, (i) => s[i]), { shape: [1, H, Tq, Tk], dtype, backend });
    }
    default:
      return undefined;
  }
}

/** q, k, v as leaves; with `strided`, transposed views of [B, T, H, hd] storage. */
function qkv(c: Case): Pair[] {
  const { B = 2, H = 2, Hkv = H, Tq, Tk = Tq, hd, hdv = hd } = c;
  const shapes: number[][] = [[B, H, Tq, hd], [B, Hkv, Tk, hd], [B, Hkv, Tk, hdv]];
  return shapes.map((s, i) => {
    if (!c.strided) return pair(s, 31 * i + s[2] + s[3], -1.5, 1.5);
    const p = pair([s[0], s[2], s[1], s[3]], 31 * i + 7, -1.5, 1.5, false);
    const view = (t: k.Tensor): k.Tensor => k.noGrad(() => t.transpose(1, 2)).detach().requiresGrad_();
    const res = { c: view(p.c), r: view(p.r) };
    dispose(p); // the views keep the storage
    return res;
  });
}

/** out and the gradients of q, k, v on one backend. */
function run(c: Case, ins: k.Tensor[], g: k.Tensor, backend: 'cpu' | 'ref'): Float64Array[] {
  const { B = 2, H = 2, Tk = c.Tq } = c;
  return k.tidy(() => {
    const mask = makeMask(c, B, H, Tk, backend);
    const opts: k.AttentionOptions = {
      causal: c.causal, window: c.window, softcap: c.softcap, scale: c.scale, dropout: c.dropout, mask,
      generator: new k.Generator(4242),
    };
    const out = k.scaledDotProductAttention(ins[0], ins[1], ins[2], opts);
    out.backward(g);
    return [out, ...ins.map((t) => t.grad!)].map((t) => Float64Array.from(t.toFloat32Array()));
  });
}

/** Reference results by case (the SIMD children compare against each one twice). */
const refCache = new Map<string, Float64Array[]>();

function compare(c: Case): void {
  const ins = qkv(c);
  const { B = 2, H = 2, Tq, hd, hdv = hd } = c;
  const g = pair([B, H, Tq, hdv], 5, -1, 1, false);
  const got = run(c, ins.map((p) => p.c), g.c, 'cpu');
  let want = refCache.get(label(c));
  if (!want) refCache.set(label(c), (want = run(c, ins.map((p) => p.r), g.r, 'ref')));
  ['out', 'dq', 'dk', 'dv'].forEach((what, i) => assertClose(got[i], want[i], { ...TOL, what: `${label(c)} ${what}` }));
  dispose(...ins, g);
}

// ---------------------------------------------------------------- groups (also run by the SIMD children)

const SIZES = [1, 7, 33, 257];

const GROUPS: Record<string, Case[]> = {
  sizes: SIZES.flatMap((T) => [8, 16, 64].flatMap((hd) => [{ Tq: T, hd }, { Tq: T, hd, causal: true }])),
  heads: [
    { H: 4, Hkv: 2, Tq: 33, hd: 16, causal: true },
    { H: 4, Hkv: 1, Tq: 33, hd: 16 },
    { H: 8, Hkv: 2, B: 1, Tq: 257, hd: 64, causal: true },
    { H: 72, Hkv: 1, B: 1, Tq: 3, hd: 8, causal: true }, // more query heads than a row block
  ],
  masks: [
    { Tq: 33, hd: 16, mask: 'pad' },
    { Tq: 33, hd: 16, mask: 'pad', causal: true },
    { Tq: 7, hd: 8, mask: 'full' },
    { Tq: 9, Tk: 20, hd: 8, mask: 'fullT', causal: true },
    { Tq: 33, Tk: 70, hd: 16, mask: 'head', H: 4, Hkv: 2 },
    { Tq: 257, hd: 16, B: 1, mask: 'pad', causal: true },
  ],
  windows: [
    { Tq: 33, hd: 16, causal: true, window: 5 },
    { Tq: 257, hd: 16, B: 1, causal: true, window: 70 },
    { Tq: 33, hd: 8, window: 4 },
    { Tq: 7, Tk: 257, hd: 16, causal: true, window: 100 },
  ],
  softcap: [
    { Tq: 33, hd: 16, softcap: 0.5, scale: 1 },
    { Tq: 257, hd: 64, B: 1, softcap: 3, scale: 1, causal: true, mask: 'pad' },
  ],
  dropout: [
    { Tq: 33, hd: 16, dropout: 0.2 },
    { Tq: 257, hd: 16, B: 1, dropout: 0.5, causal: true, H: 4, Hkv: 2 },
    { Tq: 7, Tk: 33, hd: 8, dropout: 0.1, mask: 'full' },
  ],
  lengths: [
    { Tq: 1, Tk: 257, hd: 64, causal: true }, // decode
    { Tq: 1, Tk: 257, hd: 64, H: 8, Hkv: 2, B: 1 },
    { Tq: 7, Tk: 33, hd: 16, causal: true }, // chunked prefill
    { Tq: 33, Tk: 7, hd: 16, causal: true }, // queries 0..25 see no key
    { Tq: 33, Tk: 7, hd: 16 },
    { Tq: 33, hd: 16, hdv: 8, causal: true }, // hdv != hd
    { Tq: 7, hd: 7, hdv: 33 },
  ],
};

/** Runs f with the backward's task shape forced (native/attention.cc reads it per call). */
function withBackwardMode(mode: 'split' | 'grouped' | undefined, f: () => void): void {
  const old = process.env.KESTREL_ATTN_BACKWARD;
  if (mode) process.env.KESTREL_ATTN_BACKWARD = mode;
  else delete process.env.KESTREL_ATTN_BACKWARD;
  try {
    f();
  } finally {
    if (old === undefined) delete process.env.KESTREL_ATTN_BACKWARD;
    else process.env.KESTREL_ATTN_BACKWARD = old;
  }
}

if (CHILD) {
  const addon = loadNative();
  if (!addon) throw new Error(nativeLoadError());
  for (const threads of [1, 2]) {
    addon.setThreads(threads);
    // one thread: the grouped backward; two: split where B Hkv cannot keep both threads busy
    withBackwardMode(threads === 2 ? 'split' : undefined, () => {
      for (const cases of Object.values(GROUPS)) for (const c of cases) compare(c);
    });
  }
  console.log('ok');
} else {
  // The backward has two task shapes (grouped: one task per (b, kv head) also owning dq; split:
  // per key block plus a dq pass); the default picks by thread count, the others force one.
  for (const mode of [undefined, 'split', 'grouped'] as const)
    for (const [name, cases] of Object.entries(GROUPS))
      test(`cpu attention vs float64 reference: ${name}${mode ? ` (${mode} backward)` : ''}`, { skip }, () => {
        withBackwardMode(mode, () => {
          for (const c of cases) compare(c);
        });
      });

  const needBool = !hasKernels('where', 'fill') && 'needs the where and fill kernels';
  test('cpu attention with a bool padding mask', { skip: skip || needBool }, () => {
    compare({ Tq: 33, hd: 16, mask: 'bool', causal: true });
  });

  test('non-contiguous q, k, v (transposed [B, T, H, hd] views)', { skip: skip || (!hasKernels('copy') && 'needs the copy kernel') }, () => {
    compare({ Tq: 33, hd: 16, strided: true, causal: true });
    compare({ Tq: 7, hd: 8, H: 4, Hkv: 2, strided: true });
  });

  test('logsumexp rows, including -inf for rows with no visible key', { skip }, () => {
    const cpu = k.getBackend('cpu');
    const ref = k.getBackend('ref');
    const [B, H, Tq, Tk, hd] = [1, 2, 40, 9, 16];
    const [q, kk, v] = [pair([B, H, Tq, hd], 1), pair([B, H, Tk, hd], 2), pair([B, H, Tk, hd], 3)];
    const opts = { scale: 0.25, causal: true, window: 0, softcap: 0, dropout: 0, seed: 0, counter: 0 };
    const lc = k.empty([B, H, Tq], 'float32', { backend: 'cpu' });
    const lr = k.empty([B, H, Tq], 'float64', { backend: 'ref' });
    cpu.kernels.attention(q.c, kk.c, v.c, null, opts, k.empty([B, H, Tq, hd], 'float32', { backend: 'cpu' }), lc);
    ref.kernels.attention(q.r, kk.r, v.r, null, opts, k.empty([B, H, Tq, hd], 'float64', { backend: 'ref' }), lr);
    const got = lc.toFloat32Array();
    assertClose(got, lr.toTypedArray() as Float64Array, { ...TOL, what: 'lse' });
    assert.equal(got[0], -Infinity); // shift = -31: query 0 sees nothing
    assert.ok(Number.isFinite(got[Tq - 1]));
    dispose(q, kk, v);
  });

  test('backward writes every element of dq, dk, dv (keys no query sees get 0)', { skip }, () => {
    const cpu = k.getBackend('cpu');
    // Tq = 4 queries at the end of Tk = 150 keys with a window of 3: keys 0..145 are invisible
    const [B, H, Hkv, Tq, Tk, hd] = [2, 4, 2, 4, 150, 16];
    const [q, kk, v] = [pair([B, H, Tq, hd], 1), pair([B, Hkv, Tk, hd], 2), pair([B, Hkv, Tk, hd], 3)];
    const g = pair([B, H, Tq, hd], 4);
    const opts = { scale: 0.25, causal: true, window: 3, softcap: 0, dropout: 0, seed: 0, counter: 0 };
    const out = k.empty([B, H, Tq, hd], 'float32', { backend: 'cpu' });
    const lse = k.empty([B, H, Tq], 'float32', { backend: 'cpu' });
    cpu.kernels.attention(q.c, kk.c, v.c, null, opts, out, lse);
    const nan = (shape: number[]) => k.tensor(new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(NaN), { shape, backend: 'cpu' });
    const [dq, dk, dv] = [nan([B, H, Tq, hd]), nan([B, Hkv, Tk, hd]), nan([B, Hkv, Tk, hd])];
    cpu.kernels.attentionBackward(q.c, kk.c, v.c, null, out, lse, g.c, opts, dq, dk, dv);
    for (const [name, t] of [['dq', dq], ['dk', dk], ['dv', dv]] as const) {
      const a = t.toFloat32Array();
      assert.ok(a.every(Number.isFinite), `${name} has unwritten (NaN) elements`);
    }
    const dka = dk.toFloat32Array();
    for (let b = 0; b < B * Hkv; b++)
      for (let j = 0; j < Tk - Tq - 2; j++) assert.equal(dka[(b * Tk + j) * hd], 0, `dk of invisible key ${j}`);
    dispose(q, kk, v, g);
  });

  test('bad arguments throw an Error naming the kernel, never crash', { skip }, () => {
    const cpu = k.getBackend('cpu');
    const f32 = (shape: number[]) => k.zeros(shape, { backend: 'cpu' });
    const o = { scale: 1, causal: false, window: 0, softcap: 0, dropout: 0, seed: 0, counter: 0 };
    const [q, kv] = [f32([1, 2, 3, 4]), f32([1, 2, 5, 4])];
    const bad: [RegExp, () => void][] = [
      [/attention: lse/, () => cpu.kernels.attention(q, kv, kv, null, o, f32([1, 2, 3, 4]), f32([1, 2, 4]))],
      [/attention: out/, () => cpu.kernels.attention(q, kv, kv, null, o, f32([1, 2, 3, 5]), f32([1, 2, 3]))],
      [/attention: q and k head dims differ/, () => cpu.kernels.attention(q, f32([1, 2, 5, 3]), kv, null, o, f32([1, 2, 3, 4]), f32([1, 2, 3]))],
      [/attention: query heads must be a multiple/, () => cpu.kernels.attention(f32([1, 3, 3, 4]), kv, kv, null, o, f32([1, 3, 3, 4]), f32([1, 3, 3]))],
      [/attention: k and v must agree/, () => cpu.kernels.attention(q, kv, f32([1, 2, 4, 4]), null, o, f32([1, 2, 3, 4]), f32([1, 2, 3]))],
      [/attention: mask/, () => cpu.kernels.attention(q, kv, kv, f32([1, 1, 3, 4]), o, f32([1, 2, 3, 4]), f32([1, 2, 3]))],
      [/attention: q must be float32/, () => cpu.kernels.attention(k.zeros([1, 2, 3, 4], { backend: 'cpu', dtype: 'float64' }), kv, kv, null, o, f32([1, 2, 3, 4]), f32([1, 2, 3]))],
      [/attention: k .* must be contiguous/, () => cpu.kernels.attention(q, f32([1, 2, 4, 5]).transpose(2, 3), kv, null, o, f32([1, 2, 3, 4]), f32([1, 2, 3]))],
      [/attention: dropout must be in/, () => cpu.kernels.attention(q, kv, kv, null, { ...o, dropout: 1 }, f32([1, 2, 3, 4]), f32([1, 2, 3]))],
      [/attention: window must be >= 0/, () => cpu.kernels.attention(q, kv, kv, null, { ...o, window: -2 }, f32([1, 2, 3, 4]), f32([1, 2, 3]))],
      [/attention_backward: dk/, () => cpu.kernels.attentionBackward(q, kv, kv, null, f32([1, 2, 3, 4]), f32([1, 2, 3]), f32([1, 2, 3, 4]), o, f32([1, 2, 3, 4]), f32([1, 2, 3, 4]), kv)],
      [/attention_backward: dout/, () => cpu.kernels.attentionBackward(q, kv, kv, null, f32([1, 2, 3, 4]), f32([1, 2, 3]), f32([1, 2, 4, 4]), o, f32([1, 2, 3, 4]), kv, kv)],
    ];
    for (const [re, f] of bad) assert.throws(f, re);
  });

  test('forward + backward memory is O(T): far below the composite at T = 512', { skip }, (t) => {
    const T = 512;
    const peak = (f: typeof k.scaledDotProductAttention): number => {
      const [q, kk, v] = [pair([1, 4, T, 32], 1).c, pair([1, 2, T, 32], 2).c, pair([1, 2, T, 32], 3).c];
      const g = pair([1, 4, T, 32], 4, -1, 1, false).c;
      const base = k.memory.stats().current.total;
      k.memory.resetPeak();
      k.tidy(() => f(q, kk, v, { causal: true }).backward(g));
      const bytes = k.memory.stats().peak.total - base;
      for (const x of [q, kk, v, g]) {
        x.zeroGrad();
        x.dispose();
      }
      return bytes;
    };
    const fused = peak(k.scaledDotProductAttention);
    const scores = 4 * T * T * 4; // one [1, 4, T, T] float32 tensor
    assert.ok(fused < scores / 4, `fused peak ${fused} B vs one score matrix ${scores} B`);
    let composite: number;
    try {
      composite = peak(k.attentionComposite);
    } catch (e) {
      if (/not in the addon/.test((e as Error).message)) return t.skip(`composite needs a kernel not built yet: ${(e as Error).message}`);
      throw e;
    }
    assert.ok(composite >= scores, `composite peak ${composite} B holds a score matrix`);
    assert.ok(fused * 10 < composite, `fused ${fused} B vs composite ${composite} B`);
  });

  for (const simd of ['avx2', 'scalar'])
    test(`attention groups under KESTREL_SIMD=${simd}, 1 and 2 threads (child process)`, { skip }, () => {
      runChild(fileURLToPath(import.meta.url), { KESTREL_SIMD: simd, KESTREL_ATTN_CHILD: '1' });
    });
}
