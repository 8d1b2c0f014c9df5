// The fused row kernels (softmax, RMSNorm, LayerNorm, cross-entropy, rope) of every native
// device (cpu: native/nn.cc; cuda: native/cuda/kernels/{nn,norms,loss}.cu, on a GPU or the
// emulator) in float32 against the float64 reference backend, forward and backward, through the
// public ops (y.backward(g) runs the fused backward kernel), on odd sizes that break vector tails
// and warp/block splits (rows and D of 1, 7, 33, 257, and rows longer than 1024 that cuda gives a
// block each), plus statistics (rstd, mean, lse), in-place rope, error cases and non-contiguous
// inputs. Tolerances: rtol 1e-5 / atol 1e-6 for softmax and rope, atol 1e-5 for the norms (their
// gradients cancel terms of size ~rstd), rtol 1e-4 / atol 1e-5 for cross-entropy over rows of up
// to 1000 logits. They hold on every device: CUDA's expf/logf/sqrtf are within 2 ulp (CUDA C
// Programming Guide, appendix "Mathematical Functions"), far inside rtol 1e-5 (about 80 ulp).
// On cpu the AVX2 and scalar bodies also run in child processes with KESTREL_SIMD set (the addon
// reads the CPU features once per process).
import { ALL_DEVICES, type Device, skipUnless } from '../devices.js';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import * as k from '../../src/index.js';
import { assertClose, seeded, onCpuThreads, runChild } from '../helpers.js';

const CHILD = process.env.KESTREL_NN_CHILD === '1';
const TIGHT = { atol: 1e-6, rtol: 1e-5 };
const NORM = { atol: 1e-5, rtol: 1e-5 };
const LOOSE = { atol: 1e-5, rtol: 1e-4 };

/** The same float32-rounded values as a float32 leaf on `device` and a ref float64 leaf. */
function pair(device: Device, shape: number[], seed: number, lo = -1, hi = 1): { c: k.Tensor; r: k.Tensor } {
  const f32 = Float32Array.from(seeded(shape.reduce((a, b) => a * b, 1), seed, lo, hi));
  return {
    c: k.tensor(f32, { shape, backend: device, requiresGrad: true }),
    r: k.tensor(Float64Array.from(f32), { shape, dtype: 'float64', backend: 'ref', requiresGrad: true }),
  };
}

/** int64 targets on a backend. */
const ids = (t: number[], backend: string): k.Tensor => k.tensor(BigInt64Array.from(t, BigInt), { shape: [t.length], backend });

/** y = f(inputs) and the input gradients for the upstream gradient g, as plain arrays. */
function fwdBwd(f: (...x: k.Tensor[]) => k.Tensor, xs: k.Tensor[], g: k.Tensor): Float64Array[] {
  for (const x of xs) x.zeroGrad();
  return k.tidy(() => {
    const y = f(...xs);
    y.backward(g);
    return [y, ...xs.filter((x) => x.requiresGrad).map((x) => x.grad!)].map((t) => Float64Array.from(t.toFloat32Array()));
  });
}

/** Runs f on the device (float32) and ref (float64) with the same data; compares output and gradients. */
function compare(device: Device, what: string, f: (...x: k.Tensor[]) => k.Tensor, inputs: { c: k.Tensor; r: k.Tensor }[], tol = TIGHT): void {
  const yShape = k.noGrad(() => k.tidy(() => [...f(...inputs.map((p) => p.r)).shape]));
  const g = pair(device, yShape, 777);
  const got = fwdBwd(f, inputs.map((p) => p.c), g.c);
  const want = fwdBwd(f, inputs.map((p) => p.r), g.r);
  got.forEach((v, i) => assertClose(v, want[i], { ...tol, what: `${device} ${what} ${i === 0 ? 'forward' : `grad ${i - 1}`}` }));
  for (const p of [...inputs, g]) {
    p.c.zeroGrad();
    p.r.zeroGrad();
    p.c.dispose();
    p.r.dispose();
  }
}

const SIZES = [1, 7, 33, 257];
/** Row lengths past cuda's row-per-warp limit (1024): a block per row, with a partial last pass. */
const LONG = [1025, 3001];
/**
 * Rows longer than 1024 get 10x the tolerance: a float32 sum of D terms in sequence (the cpu
 * scalar body's mean and variance) errs by up to D 2^-24 relative, 2e-4 at D = 3001 (3e-5 seen).
 */
const forD = (D: number, tol: { atol: number; rtol: number }) => (D > 1024 ? { atol: tol.atol * 10, rtol: tol.rtol * 10 } : tol);

// ---------------------------------------------------------------- groups (also run by the SIMD children)

const GROUPS: Record<string, (d: Device) => void> = {
  softmax(d) {
    for (const rows of [1, 7, 33])
      for (const D of SIZES)
        for (const log of [false, true]) {
          const x = pair(d, [rows, D], rows * 1000 + D, -4, 4);
          compare(d, `${log ? 'logSoftmax' : 'softmax'} [${rows},${D}]`, (t) => (log ? k.logSoftmax(t) : k.softmax(t)), [x]);
        }
    for (const D of LONG)
      for (const log of [false, true])
        compare(d, `${log ? 'logSoftmax' : 'softmax'} [3,${D}]`, (t) => (log ? k.logSoftmax(t) : k.softmax(t)), [pair(d, [3, D], D, -4, 4)], forD(D, TIGHT));
    // leading dims, large logits (stability), and -inf entries (masked scores)
    compare(d, 'softmax [2,3,33] large', (t) => k.softmax(t), [pair(d, [2, 3, 33], 5, 60, 90)]);
    const data = Float32Array.from(seeded(3 * 9, 8));
    data[0] = data[4] = data[13] = -Infinity;
    for (const log of [false, true]) {
      const c = k.tensor(data, { shape: [3, 9], backend: d, requiresGrad: true });
      const r = k.tensor(Float64Array.from(data), { shape: [3, 9], dtype: 'float64', backend: 'ref', requiresGrad: true });
      const y = k.noGrad(() => (log ? k.logSoftmax(c) : k.softmax(c)));
      const want = k.noGrad(() => (log ? k.logSoftmax(r) : k.softmax(r)));
      assertClose(y.toFloat32Array(), want.toFloat32Array(), { ...TIGHT, what: `${d} ${log ? 'log' : ''}softmax with -inf` });
      for (const t of [c, r, y, want]) t.dispose();
    }
  },

  rmsNorm(d) {
    for (const rows of [1, 7, 33])
      for (const D of [...SIZES, ...LONG])
        for (const [withW, offset] of [[true, 0], [true, 1], [false, 0]] as const) {
          const x = pair(d, [rows, D], rows + D, -2, 2);
          const ins = withW ? [x, pair(d, [D], 3 * D, 0.5, 1.5)] : [x];
          compare(d, `rmsNorm [${rows},${D}] w=${withW} offset=${offset}`, (t, w) => k.rmsNorm(t, w ?? null, { eps: 1e-5, offset }), ins, forD(D, NORM));
        }
    compare(d, 'rmsNorm [2,3,257] no weight grad', (t) => k.rmsNorm(t, null), [pair(d, [2, 3, 257], 4)], NORM);
    // more rows than cuda has blocks in the emulator (64), a row per warp and a row per block:
    // blocks loop over rows and the weight gradient sums many per-block partials
    for (const [rows, D] of [[300, 33], [130, 1025]])
      compare(d, `rmsNorm [${rows},${D}]`, (t, w) => k.rmsNorm(t, w), [pair(d, [rows, D], 6, -2, 2), pair(d, [D], 7, 0.5, 1.5)], forD(D, NORM));
  },

  layerNorm(d) {
    for (const rows of [1, 7, 33])
      for (const D of [...SIZES, ...LONG])
        for (const [withW, withB] of [[true, true], [true, false], [false, true], [false, false]] as const) {
          const x = pair(d, [rows, D], rows + 2 * D, 1, 3); // offset mean: the two-pass variance matters
          const w = withW ? pair(d, [D], 5 * D, 0.5, 1.5) : null;
          const b = withB ? pair(d, [D], 7 * D) : null;
          const ins = [x, ...(w ? [w] : []), ...(b ? [b] : [])];
          compare(d, `layerNorm [${rows},${D}] w=${withW} b=${withB}`, (t, p1, p2) =>
            k.layerNorm(t, withW ? p1 : null, withB ? (withW ? p2 : p1) : null, 1e-5), ins, forD(D, NORM));
        }
    for (const [rows, D] of [[300, 33], [130, 1025]])
      compare(d, `layerNorm [${rows},${D}]`, (t, w, b) => k.layerNorm(t, w, b, 1e-5),
        [pair(d, [rows, D], 8, 1, 3), pair(d, [D], 9, 0.5, 1.5), pair(d, [D], 10)], forD(D, NORM));
  },

  crossEntropy(d) {
    for (const N of [1, 7, 33])
      for (const V of [...SIZES, 1000, 3001])
        for (const labelSmoothing of [0, 0.1]) {
          const t = Array.from({ length: N }, (_, i) => (i % 5 === 3 ? -100 : (i * 7919) % V));
          const [tc, tr] = [ids(t, d), ids(t, 'ref')];
          const o = { labelSmoothing, reduction: 'none' as const };
          const x = pair(d, [N, V], N * V, -5, 5);
          const g = pair(d, [N], 3);
          const got = fwdBwd((l) => k.crossEntropy(l, tc, o), [x.c], g.c);
          const want = fwdBwd((l) => k.crossEntropy(l, tr, o), [x.r], g.r);
          assertClose(got[0], want[0], { ...forD(V, LOOSE), what: `${d} crossEntropy [${N},${V}] eps ${labelSmoothing} loss` });
          assertClose(got[1], want[1], { ...forD(V, LOOSE), what: `${d} crossEntropy [${N},${V}] eps ${labelSmoothing} dlogits` });
          t.forEach((ti, i) => {
            if (ti === -100) assert.equal(got[0][i], 0, 'ignored row has loss 0');
          });
          for (const z of [tc, tr, x.c, x.r, g.c, g.r]) z.dispose();
        }
  },

  rope(d) {
    for (const hd of [2, 8, 66, 128])
      for (const T of [1, 7, 33])
        for (const interleaved of [false, true])
          for (const cosB of [1, 2]) {
            const half = hd / 2;
            const ang = Float32Array.from({ length: cosB * T * half }, (_, i) => {
              const [b, t, j] = [Math.floor(i / (T * half)), Math.floor(i / half) % T, i % half];
              return (t + 3 * b) * 10000 ** (-(2 * j) / hd);
            });
            const mk = (backend: string, f: (a: number) => number) =>
              k.tensor(backend === 'ref' ? Float64Array.from(ang.map(f)) : ang.map(f), { shape: [cosB, T, half], dtype: backend === 'ref' ? 'float64' : 'float32', backend });
            const [cc, sc, cr, sr] = [mk(d, Math.cos), mk(d, Math.sin), mk('ref', Math.cos), mk('ref', Math.sin)];
            const x = pair(d, [2, 3, T, hd], hd + T);
            const g = pair(d, [2, 3, T, hd], 11);
            const got = fwdBwd((t) => k.rope(t, cc, sc, { interleaved }), [x.c], g.c);
            const want = fwdBwd((t) => k.rope(t, cr, sr, { interleaved }), [x.r], g.r);
            const what = `${d} rope hd=${hd} T=${T} interleaved=${interleaved} cos batch ${cosB}`;
            assertClose(got[0], want[0], { ...TIGHT, what: `${what} forward` });
            assertClose(got[1], want[1], { ...TIGHT, what: `${what} grad` });
            for (const z of [cc, sc, cr, sr, x.c, x.r, g.c, g.r]) z.dispose();
          }
  },
};

/** Kernel-table calls with bad arguments and the error each must throw (the same words on every device). */
function badCalls(d: Device): [RegExp, () => void][] {
  const kern = k.getBackend(d).kernels;
  const f32 = (shape: number[]) => k.zeros(shape, { backend: d });
  const f64 = (shape: number[]) => k.zeros(shape, { backend: d, dtype: 'float64' });
  const i64 = (v: number[]) => ids(v, d);
  const ce = { ignoreIndex: -100, labelSmoothing: 0 };
  const ro = { interleaved: false, inverse: false };
  return [
    [/softmax: out/, () => kern.softmax(f32([3, 4]), f32([3, 5]), false)],
    [/softmax: input must be float32/, () => kern.softmax(f64([3, 4]), f64([3, 4]), false)],
    [/softmax_backward: dx/, () => kern.softmaxBackward(f32([3, 4]), f32([3, 4]), f32([4, 3]), true)],
    [/rms_norm: weight/, () => kern.rmsNorm(f32([3, 4]), f32([5]), 1e-5, 0, f32([3, 4]), f32([3]))],
    [/rms_norm: rstd/, () => kern.rmsNorm(f32([3, 4]), null, 1e-5, 0, f32([3, 4]), f32([4]))],
    [/rms_norm_backward: dweight/, () => kern.rmsNormBackward(f32([3, 4]), null, 0, f32([3]), f32([3, 4]), f32([3, 4]), f32([3]))],
    [/layer_norm: bias/, () => kern.layerNorm(f32([3, 4]), null, f32([3]), 1e-5, f32([3, 4]), f32([3]), f32([3]))],
    [/layer_norm_backward: mean/, () => kern.layerNormBackward(f32([3, 4]), null, f32([4]), f32([3]), f32([3, 4]), f32([3, 4]), null, null)],
    // on cuda a bad target is found by a kernel and reported at the next read (src/backend/cuda/index_errors.ts)
    [/cross_entropy: target 7 at row 1 is out of range for 5 classes/, () => { const l = f32([2]); kern.crossEntropy(f32([2, 5]), i64([0, 7]), ce, l, f32([2])); l.toArray(); }],
    [/cross_entropy: target -1/, () => { const l = f32([2]); kern.crossEntropy(f32([2, 5]), i64([-1, 0]), ce, l, f32([2])); l.toArray(); }],
    [/cross_entropy: target must be contiguous int64/, () => kern.crossEntropy(f32([2, 5]), f32([2]), ce, f32([2]), f32([2]))],
    [/cross_entropy_backward: target 5/, () => { const g = f32([2, 5]); kern.crossEntropyBackward(f32([2, 5]), i64([5, 0]), f32([2]), f32([2]), ce, g); g.toArray(); }],
    [/rope: cos/, () => kern.rope(f32([1, 2, 3, 4]), f32([1, 3, 3]), f32([1, 3, 3]), f32([1, 2, 3, 4]), ro)],
    [/rope: x/, () => kern.rope(f32([1, 2, 3, 5]), f32([1, 3, 2]), f32([1, 3, 2]), f32([1, 2, 3, 5]), ro)],
  ];
}

function deviceTests(d: Device): void {
  for (const [name, f] of Object.entries(GROUPS)) test(`${name} vs float64 reference`, () => f(d));

  test('statistics: rstd, mean and lse rows', () => {
    const dev = k.getBackend(d);
    const ref = k.getBackend('ref');
    const x = pair(d, [7, 33], 1, 1, 3);
    const vecs = (b: k.Backend, dt: k.DType) => [k.empty([7], dt, { backend: b }), k.empty([7], dt, { backend: b })];
    const [mc, rc] = vecs(dev, 'float32');
    const [mr, rr] = vecs(ref, 'float64');
    const out = (b: k.Backend, dt: k.DType) => k.empty([7, 33], dt, { backend: b });
    dev.kernels.layerNorm(x.c, null, null, 1e-5, out(dev, 'float32'), mc, rc);
    ref.kernels.layerNorm(x.r, null, null, 1e-5, out(ref, 'float64'), mr, rr);
    assertClose(mc, mr, { ...TIGHT, what: 'layerNorm mean' });
    assertClose(rc, rr, { ...TIGHT, what: 'layerNorm rstd' });
    dev.kernels.rmsNorm(x.c, null, 1e-5, 0, out(dev, 'float32'), rc);
    ref.kernels.rmsNorm(x.r, null, 1e-5, 0, out(ref, 'float64'), rr);
    assertClose(rc, rr, { ...TIGHT, what: 'rmsNorm rstd' });
    const t = [0, 5, -100, 32, 1, 2, 3];
    const [tc, tr] = [ids(t, d), ids(t, 'ref')];
    dev.kernels.crossEntropy(x.c, tc, { ignoreIndex: -100, labelSmoothing: 0 }, mc, rc);
    ref.kernels.crossEntropy(x.r, tr, { ignoreIndex: -100, labelSmoothing: 0 }, mr, rr);
    assertClose(rc, rr, { ...TIGHT, what: 'cross-entropy lse' });
    assertClose(mc, mr, { ...TIGHT, what: 'cross-entropy loss' });
  });

  test('in place: rope (out = x) and its inverse, rmsNorm backward (dx = dy), cross-entropy backward (dlogits = logits)', () => {
    const kern = k.getBackend(d).kernels;
    const [T, half] = [5, 4];
    const ang = Float32Array.from({ length: T * half }, (_, i) => 0.3 * i);
    const c = k.tensor(ang.map(Math.cos), { shape: [1, T, half], backend: d });
    const s = k.tensor(ang.map(Math.sin), { shape: [1, T, half], backend: d });
    for (const interleaved of [false, true]) {
      const data = Float32Array.from(seeded(2 * T * 2 * half, 4));
      const x = k.tensor(data, { shape: [1, 2, T, 2 * half], backend: d });
      const want = k.noGrad(() => k.rope(x, c, s, { interleaved })).toFloat32Array();
      kern.rope(x, c, s, x, { interleaved, inverse: false });
      assertClose(x.toFloat32Array(), want, { ...TIGHT, what: `in-place rope interleaved=${interleaved}` });
      kern.rope(x, c, s, x, { interleaved, inverse: true });
      assertClose(x.toFloat32Array(), data, { ...TIGHT, what: `inverse rope interleaved=${interleaved}` });
      x.dispose();
    }
    for (const D of [33, 1025]) {
      const x = pair(d, [3, D], 5, -2, 2).c;
      const w = pair(d, [D], 6, 0.5, 1.5).c;
      const rstd = k.empty([3], 'float32', { backend: d });
      kern.rmsNorm(x, w, 1e-5, 0, k.empty([3, D], 'float32', { backend: d }), rstd);
      const dy = pair(d, [3, D], 7).c;
      const [dx, dw, dw2] = [k.empty([3, D], 'float32', { backend: d }), k.empty([D], 'float32', { backend: d }), k.empty([D], 'float32', { backend: d })];
      kern.rmsNormBackward(x, w, 0, rstd, dy, dx, dw);
      kern.rmsNormBackward(x, w, 0, rstd, dy, dy, dw2);
      assertClose(dy, dx.toFloat32Array(), { atol: 0, rtol: 0, what: `rmsNorm backward with dx = dy, D=${D}` });
      assertClose(dw2, dw.toFloat32Array(), { atol: 0, rtol: 0, what: `rmsNorm dweight with dx = dy, D=${D}` });
    }
    for (const V of [33, 1025]) {
      const logits = pair(d, [4, V], 8, -3, 3).c;
      const t = ids([1, -100, 0, V - 1], d);
      const ce = { ignoreIndex: -100, labelSmoothing: 0.1 };
      const [loss, lse, dl] = [k.empty([4], 'float32', { backend: d }), k.empty([4], 'float32', { backend: d }), pair(d, [4], 9).c];
      kern.crossEntropy(logits, t, ce, loss, lse);
      const apart = k.empty([4, V], 'float32', { backend: d });
      kern.crossEntropyBackward(logits, t, lse, dl, ce, apart);
      kern.crossEntropyBackward(logits, t, lse, dl, ce, logits);
      assertClose(logits, apart.toFloat32Array(), { atol: 0, rtol: 0, what: `cross-entropy backward with dlogits = logits, V=${V}` });
    }
  });

  test('non-contiguous inputs go through contiguous() first', () => {
    // x is a transposed view: the op layer makes it contiguous before the fused kernel
    const viewOf = (p: { c: k.Tensor; r: k.Tensor }) => ({
      c: k.noGrad(() => p.c.transpose(0, 1)).detach().requiresGrad_(),
      r: k.noGrad(() => p.r.transpose(0, 1)).detach().requiresGrad_(),
    });
    compare(d, 'softmax of a transposed view', (t) => k.softmax(t), [viewOf(pair(d, [33, 7], 1))]);
    compare(d, 'softmax over dim 0', (t) => k.softmax(t, 0), [pair(d, [33, 7], 2)]);
    compare(d, 'rmsNorm of a transposed view', (t, w) => k.rmsNorm(t, w), [viewOf(pair(d, [33, 7], 3)), pair(d, [33], 4)], NORM);
    compare(d, 'layerNorm of a transposed view', (t) => k.layerNorm(t, null, null), [viewOf(pair(d, [33, 7], 5))], NORM);
  });

  test('bad arguments throw an Error naming the kernel, never crash', () => {
    for (const [re, f] of badCalls(d)) assert.throws(f, re);
    const f32 = (shape: number[]) => k.zeros(shape, { backend: d });
    const ce = { ignoreIndex: -100, labelSmoothing: 0 };
    // an out-of-range target is reported before anything is written (cpu), or at the next read
    // after the kernels that met it (cuda: no wait for the device per loss call)
    const loss = k.tensor(new Float32Array([42, 42]), { backend: d });
    if (d === 'cpu') {
      assert.throws(() => k.getBackend(d).kernels.crossEntropy(f32([2, 5]), ids([0, 9], d), ce, loss, f32([2])), /target 9/);
      assert.deepEqual([...loss.toFloat32Array()], [42, 42]);
    } else {
      k.getBackend(d).kernels.crossEntropy(f32([2, 5]), ids([0, 9], d), ce, loss, f32([2]));
      assert.throws(() => loss.toFloat32Array(), /cross_entropy: target 9 at row 1 is out of range for 5 classes \(found on the cuda device/);
      assert.ok(Number.isFinite(loss.toFloat32Array()[0]), 'the good row is computed');
    }
    // the op reports it with the value too
    assert.throws(() => k.crossEntropy(f32([2, 5]), ids([0, 9], d), { reduction: 'none' }).toArray(), /target 9/);
  });
}

if (CHILD) {
  // Child mode (see the SIMD test below): every group on cpu under the env's KESTREL_SIMD, 1 and 2 threads.
  onCpuThreads(() => {
    for (const f of Object.values(GROUPS)) f('cpu');
  });
} else {
  for (const device of ALL_DEVICES)
    describe(`fused row kernels on ${device}`, { skip: skipUnless(device) }, () => {
      deviceTests(device);
      if (device === 'cpu')
        for (const simd of ['avx2', 'scalar'])
          test(`all groups under KESTREL_SIMD=${simd}, 1 and 2 threads (child process)`, () => {
            runChild(fileURLToPath(import.meta.url), { KESTREL_SIMD: simd, KESTREL_NN_CHILD: '1' }, 120_000);
          });
    });
}
