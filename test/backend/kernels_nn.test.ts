// The native fused row kernels (native/nn.cc: softmax, RMSNorm, LayerNorm, cross-entropy, rope)
// in float32 against the float64 reference backend, forward and backward, through the public ops
// (y.backward(g) runs the fused backward kernel), on odd sizes that break vector tails
// (rows and D of 1, 7, 33, 257), plus statistics (rstd, mean, lse), in-place rope, error cases
// and non-contiguous inputs. Tolerances: rtol 1e-5 / atol 1e-6 for softmax and rope, atol 1e-5
// for the norms (their gradients cancel terms of size ~rstd), rtol 1e-4 / atol 1e-5 for
// cross-entropy over rows of up to 1000 logits.
// The AVX2 and scalar bodies run in child processes with KESTREL_SIMD set (the addon reads the
// CPU features once per process).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import * as k from '../../src/index.js';
import { loadNative, nativeLoadError } from '../../src/backend/addon.js';
import { assertClose, seeded, runChild } from '../helpers.js';

const HAS_CPU = k.hasBackend('cpu');
const skip = HAS_CPU ? false : `cpu backend not built (${nativeLoadError()})`;
const CHILD = process.env.KESTREL_NN_CHILD === '1';
const TIGHT = { atol: 1e-6, rtol: 1e-5 };
const NORM = { atol: 1e-5, rtol: 1e-5 };
const LOOSE = { atol: 1e-5, rtol: 1e-4 };

/** Kernels another engineer's file provides; tests that need them skip until they land. */
const hasKernels = (...names: string[]): boolean => names.every((n) => loadNative()?.kernels.includes(n) ?? false);

/** The same float32-rounded values as a cpu float32 leaf and a ref float64 leaf. */
function pair(shape: number[], seed: number, lo = -1, hi = 1): { c: k.Tensor; r: k.Tensor } {
  const f32 = Float32Array.from(seeded(shape.reduce((a, b) => a * b, 1), seed, lo, hi));
  return {
    c: k.tensor(f32, { shape, backend: 'cpu', requiresGrad: true }),
    r: k.tensor(Float64Array.from(f32), { shape, dtype: 'float64', backend: 'ref', requiresGrad: true }),
  };
}

/** y = f(inputs) and the input gradients for the upstream gradient g, as plain arrays. */
function fwdBwd(f: (...x: k.Tensor[]) => k.Tensor, xs: k.Tensor[], g: k.Tensor): Float64Array[] {
  for (const x of xs) x.zeroGrad();
  return k.tidy(() => {
    const y = f(...xs);
    y.backward(g);
    return [y, ...xs.filter((x) => x.requiresGrad).map((x) => x.grad!)].map((t) => Float64Array.from(t.toFloat32Array()));
  });
}

/** Runs f on cpu (float32) and ref (float64) with the same data; compares output and gradients. */
function compare(what: string, f: (...x: k.Tensor[]) => k.Tensor, inputs: { c: k.Tensor; r: k.Tensor }[], tol = TIGHT): void {
  const yShape = k.noGrad(() => k.tidy(() => [...f(...inputs.map((p) => p.r)).shape]));
  const g = pair(yShape, 777);
  const got = fwdBwd(f, inputs.map((p) => p.c), g.c);
  const want = fwdBwd(f, inputs.map((p) => p.r), g.r);
  got.forEach((v, i) => assertClose(v, want[i], { ...tol, what: `${what} ${i === 0 ? 'forward' : `grad ${i - 1}`}` }));
  for (const p of [...inputs, g]) {
    p.c.zeroGrad();
    p.r.zeroGrad();
    p.c.dispose();
    p.r.dispose();
  }
}

const SIZES = [1, 7, 33, 257];

// ---------------------------------------------------------------- groups (also run by the SIMD children)

const GROUPS: Record<string, () => void> = {
  softmax() {
    for (const rows of [1, 7, 33])
      for (const D of SIZES)
        for (const log of [false, true]) {
          const x = pair([rows, D], rows * 1000 + D, -4, 4);
          compare(`${log ? 'logSoftmax' : 'softmax'} [${rows},${D}]`, (t) => (log ? k.logSoftmax(t) : k.softmax(t)), [x]);
        }
    // leading dims, large logits (stability), and -inf entries (masked scores)
    compare('softmax [2,3,33] large', (t) => k.softmax(t), [pair([2, 3, 33], 5, 60, 90)]);
    const data = Float32Array.from(seeded(3 * 9, 8));
    data[0] = data[4] = data[13] = -Infinity;
    for (const log of [false, true]) {
      const c = k.tensor(data, { shape: [3, 9], backend: 'cpu', requiresGrad: true });
      const r = k.tensor(Float64Array.from(data), { shape: [3, 9], dtype: 'float64', backend: 'ref', requiresGrad: true });
      const y = k.noGrad(() => (log ? k.logSoftmax(c) : k.softmax(c)));
      const want = k.noGrad(() => (log ? k.logSoftmax(r) : k.softmax(r)));
      assertClose(y.toFloat32Array(), want.toFloat32Array(), { ...TIGHT, what: `${log ? 'log' : ''}softmax with -inf` });
      for (const t of [c, r, y, want]) t.dispose();
    }
  },

  rmsNorm() {
    for (const rows of [1, 7, 33])
      for (const D of SIZES)
        for (const [withW, offset] of [[true, 0], [true, 1], [false, 0]] as const) {
          const x = pair([rows, D], rows + D, -2, 2);
          const ins = withW ? [x, pair([D], 3 * D, 0.5, 1.5)] : [x];
          compare(`rmsNorm [${rows},${D}] w=${withW} offset=${offset}`, (t, w) => k.rmsNorm(t, w ?? null, { eps: 1e-5, offset }), ins, NORM);
        }
    compare('rmsNorm [2,3,257] no weight grad', (t) => k.rmsNorm(t, null), [pair([2, 3, 257], 4)], NORM);
  },

  layerNorm() {
    for (const rows of [1, 7, 33])
      for (const D of SIZES)
        for (const [withW, withB] of [[true, true], [true, false], [false, true], [false, false]] as const) {
          const x = pair([rows, D], rows + 2 * D, 1, 3); // offset mean: the two-pass variance matters
          const w = withW ? pair([D], 5 * D, 0.5, 1.5) : null;
          const b = withB ? pair([D], 7 * D) : null;
          const ins = [x, ...(w ? [w] : []), ...(b ? [b] : [])];
          compare(`layerNorm [${rows},${D}] w=${withW} b=${withB}`, (t, p1, p2) =>
            k.layerNorm(t, withW ? p1 : null, withB ? (withW ? p2 : p1) : null, 1e-5), ins, NORM);
        }
  },

  crossEntropy() {
    for (const N of [1, 7, 33])
      for (const V of [...SIZES, 1000])
        for (const labelSmoothing of [0, 0.1]) {
          const t = Array.from({ length: N }, (_, i) => (i % 5 === 3 ? -100 : (i * 7919) % V));
          const tc = k.tensor(BigInt64Array.from(t, BigInt), { shape: [N], backend: 'cpu' });
          const tr = k.tensor(BigInt64Array.from(t, BigInt), { shape: [N], backend: 'ref' });
          const o = { labelSmoothing, reduction: 'none' as const };
          const x = pair([N, V], N * V, -5, 5);
          const g = pair([N], 3);
          const got = fwdBwd((l) => k.crossEntropy(l, tc, o), [x.c], g.c);
          const want = fwdBwd((l) => k.crossEntropy(l, tr, o), [x.r], g.r);
          assertClose(got[0], want[0], { ...LOOSE, what: `crossEntropy [${N},${V}] eps ${labelSmoothing} loss` });
          assertClose(got[1], want[1], { ...LOOSE, what: `crossEntropy [${N},${V}] eps ${labelSmoothing} dlogits` });
          t.forEach((ti, i) => {
            if (ti === -100) assert.equal(got[0][i], 0, 'ignored row has loss 0');
          });
          for (const z of [tc, tr, x.c, x.r, g.c, g.r]) z.dispose();
        }
  },

  rope() {
    for (const hd of [2, 8, 66, 128])
      for (const T of [1, 7, 33])
        for (const interleaved of [false, true])
          for (const cosB of [1, 2]) {
            const half = hd / 2;
            const ang = Float32Array.from({ length: cosB * T * half }, (_, i) => {
              const [b, t, j] = [Math.floor(i / (T * half)), Math.floor(i / half) % T, i % half];
              return (t + 3 * b) * 10000 ** (-(2 * j) / hd);
            });
            const mk = (backend: 'cpu' | 'ref', f: (a: number) => number) =>
              k.tensor(backend === 'cpu' ? ang.map(f) : Float64Array.from(ang.map(f)), { shape: [cosB, T, half], dtype: backend === 'cpu' ? 'float32' : 'float64', backend });
            const [cc, sc, cr, sr] = [mk('cpu', Math.cos), mk('cpu', Math.sin), mk('ref', Math.cos), mk('ref', Math.sin)];
            const x = pair([2, 3, T, hd], hd + T);
            const g = pair([2, 3, T, hd], 11);
            const got = fwdBwd((t) => k.rope(t, cc, sc, { interleaved }), [x.c], g.c);
            const want = fwdBwd((t) => k.rope(t, cr, sr, { interleaved }), [x.r], g.r);
            const what = `rope hd=${hd} T=${T} interleaved=${interleaved} cos batch ${cosB}`;
            assertClose(got[0], want[0], { ...TIGHT, what: `${what} forward` });
            assertClose(got[1], want[1], { ...TIGHT, what: `${what} grad` });
            for (const z of [cc, sc, cr, sr, x.c, x.r, g.c, g.r]) z.dispose();
          }
  },
};

if (CHILD) {
  // Child mode (see the SIMD test below): every group under the env's KESTREL_SIMD, 1 and 2 threads.
  const addon = loadNative();
  if (!addon) throw new Error(nativeLoadError());
  for (const threads of [1, 2]) {
    addon.setThreads(threads);
    for (const f of Object.values(GROUPS)) f();
  }
  console.log('ok');
} else {
  for (const [name, f] of Object.entries(GROUPS)) test(`cpu ${name} vs float64 reference`, { skip }, f);

  test('statistics: rstd, mean and lse rows', { skip }, () => {
    const cpu = k.getBackend('cpu');
    const ref = k.getBackend('ref');
    const x = pair([7, 33], 1, 1, 3);
    const vecs = (b: k.Backend, dt: k.DType) => [k.empty([7], dt, { backend: b }), k.empty([7], dt, { backend: b })];
    const [mc, rc] = vecs(cpu, 'float32');
    const [mr, rr] = vecs(ref, 'float64');
    const out = (b: k.Backend, dt: k.DType) => k.empty([7, 33], dt, { backend: b });
    cpu.kernels.layerNorm(x.c, null, null, 1e-5, out(cpu, 'float32'), mc, rc);
    ref.kernels.layerNorm(x.r, null, null, 1e-5, out(ref, 'float64'), mr, rr);
    assertClose(mc, mr, { ...TIGHT, what: 'layerNorm mean' });
    assertClose(rc, rr, { ...TIGHT, what: 'layerNorm rstd' });
    cpu.kernels.rmsNorm(x.c, null, 1e-5, 0, out(cpu, 'float32'), rc);
    ref.kernels.rmsNorm(x.r, null, 1e-5, 0, out(ref, 'float64'), rr);
    assertClose(rc, rr, { ...TIGHT, what: 'rmsNorm rstd' });
    const t = [0, 5, -100, 32, 1, 2, 3];
    const tc = k.tensor(BigInt64Array.from(t, BigInt), { backend: 'cpu' });
    const tr = k.tensor(BigInt64Array.from(t, BigInt), { backend: 'ref' });
    cpu.kernels.crossEntropy(x.c, tc, { ignoreIndex: -100, labelSmoothing: 0 }, mc, rc);
    ref.kernels.crossEntropy(x.r, tr, { ignoreIndex: -100, labelSmoothing: 0 }, mr, rr);
    assertClose(rc, rr, { ...TIGHT, what: 'cross-entropy lse' });
    assertClose(mc, mr, { ...TIGHT, what: 'cross-entropy loss' });
  });

  test('rope in place (out = x) and the inverse rotation undoes it', { skip }, () => {
    const cpu = k.getBackend('cpu');
    const [T, half] = [5, 4];
    const ang = Float32Array.from({ length: T * half }, (_, i) => 0.3 * i);
    const c = k.tensor(ang.map(Math.cos), { shape: [1, T, half], backend: 'cpu' });
    const s = k.tensor(ang.map(Math.sin), { shape: [1, T, half], backend: 'cpu' });
    for (const interleaved of [false, true]) {
      const data = Float32Array.from(seeded(2 * T * 2 * half, 4));
      const x = k.tensor(data, { shape: [1, 2, T, 2 * half], backend: 'cpu' });
      const want = k.noGrad(() => k.rope(x, c, s, { interleaved })).toFloat32Array();
      cpu.kernels.rope(x, c, s, x, { interleaved, inverse: false });
      assertClose(x.toFloat32Array(), want, { ...TIGHT, what: `in-place rope interleaved=${interleaved}` });
      cpu.kernels.rope(x, c, s, x, { interleaved, inverse: true });
      assertClose(x.toFloat32Array(), data, { ...TIGHT, what: `inverse rope interleaved=${interleaved}` });
      x.dispose();
    }
  });

  test('non-contiguous inputs go through contiguous() first', { skip: skip || (!hasKernels('copy') && 'needs the copy kernel (native/copy.cc)') }, () => {
    // x is a transposed view: the op layer makes it contiguous before the fused kernel
    const viewOf = (p: { c: k.Tensor; r: k.Tensor }) => ({
      c: k.noGrad(() => p.c.transpose(0, 1)).detach().requiresGrad_(),
      r: k.noGrad(() => p.r.transpose(0, 1)).detach().requiresGrad_(),
    });
    compare('softmax of a transposed view', (t) => k.softmax(t), [viewOf(pair([33, 7], 1))]);
    compare('softmax over dim 0', (t) => k.softmax(t, 0), [pair([33, 7], 2)]);
    compare('rmsNorm of a transposed view', (t, w) => k.rmsNorm(t, w), [viewOf(pair([33, 7], 3)), pair([33], 4)], NORM);
    compare('layerNorm of a transposed view', (t) => k.layerNorm(t, null, null), [viewOf(pair([33, 7], 5))], NORM);
  });

  test('bad arguments throw an Error naming the kernel, never crash', { skip }, () => {
    const cpu = k.getBackend('cpu');
    const f32 = (shape: number[]) => k.zeros(shape, { backend: 'cpu' });
    const f64 = (shape: number[]) => k.zeros(shape, { backend: 'cpu', dtype: 'float64' });
    const i64 = (v: number[]) => k.tensor(BigInt64Array.from(v, BigInt), { backend: 'cpu' });
    const ce = { ignoreIndex: -100, labelSmoothing: 0 };
    const bad: [RegExp, () => void][] = [
      [/softmax: out/, () => cpu.kernels.softmax(f32([3, 4]), f32([3, 5]), false)],
      [/softmax: input must be float32/, () => cpu.kernels.softmax(f64([3, 4]), f64([3, 4]), false)],
      [/softmax_backward: dx/, () => cpu.kernels.softmaxBackward(f32([3, 4]), f32([3, 4]), f32([4, 3]), true)],
      [/rms_norm: weight/, () => cpu.kernels.rmsNorm(f32([3, 4]), f32([5]), 1e-5, 0, f32([3, 4]), f32([3]))],
      [/rms_norm: rstd/, () => cpu.kernels.rmsNorm(f32([3, 4]), null, 1e-5, 0, f32([3, 4]), f32([4]))],
      [/rms_norm_backward: dweight/, () => cpu.kernels.rmsNormBackward(f32([3, 4]), null, 0, f32([3]), f32([3, 4]), f32([3, 4]), f32([3]))],
      [/layer_norm: bias/, () => cpu.kernels.layerNorm(f32([3, 4]), null, f32([3]), 1e-5, f32([3, 4]), f32([3]), f32([3]))],
      [/layer_norm_backward: mean/, () => cpu.kernels.layerNormBackward(f32([3, 4]), null, f32([4]), f32([3]), f32([3, 4]), f32([3, 4]), null, null)],
      [/cross_entropy: target 7 at row 1 is out of range for 5 classes/, () => cpu.kernels.crossEntropy(f32([2, 5]), i64([0, 7]), ce, f32([2]), f32([2]))],
      [/cross_entropy: target -1/, () => cpu.kernels.crossEntropy(f32([2, 5]), i64([-1, 0]), ce, f32([2]), f32([2]))],
      [/cross_entropy: target must be contiguous int64/, () => cpu.kernels.crossEntropy(f32([2, 5]), f32([2]), ce, f32([2]), f32([2]))],
      [/cross_entropy_backward: target 5/, () => cpu.kernels.crossEntropyBackward(f32([2, 5]), i64([5, 0]), f32([2]), f32([2]), ce, f32([2, 5]))],
      [/rope: cos/, () => cpu.kernels.rope(f32([1, 2, 3, 4]), f32([1, 3, 3]), f32([1, 3, 3]), f32([1, 2, 3, 4]), { interleaved: false, inverse: false })],
      [/rope: x/, () => cpu.kernels.rope(f32([1, 2, 3, 5]), f32([1, 3, 2]), f32([1, 3, 2]), f32([1, 2, 3, 5]), { interleaved: false, inverse: false })],
    ];
    for (const [re, f] of bad) assert.throws(f, re);
    // an out-of-range target is reported before anything is written
    const loss = k.tensor(new Float32Array([42, 42]), { backend: 'cpu' });
    assert.throws(() => cpu.kernels.crossEntropy(f32([2, 5]), i64([0, 9]), ce, loss, f32([2])), /target 9/);
    assert.deepEqual([...loss.toFloat32Array()], [42, 42]);
    // the op reports it with the value too
    assert.throws(() => k.crossEntropy(f32([2, 5]), i64([0, 9]), { reduction: 'none' }), /target 9/);
  });

  for (const simd of ['avx2', 'scalar'])
    test(`all groups under KESTREL_SIMD=${simd}, 1 and 2 threads (child process)`, { skip }, () => {
      runChild(fileURLToPath(import.meta.url), { KESTREL_SIMD: simd, KESTREL_NN_CHILD: '1' }, 60_000);
    });
}
