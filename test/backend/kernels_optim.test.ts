// The fused AdamW kernel of every native device (cpu: native/optim.cc; cuda: native/cuda/kernels/
// optim.cu) against the float64 reference kernel over three steps, on sizes that break vector
// tails and grid strides (1, 7, 33, 257, 100003), with and without weight decay, including a
// view at an element offset (a slice of a flat parameter arena); a group of tensors of every size
// in one call (cuda's multi-tensor launch, chunks of 65536) equal to one call per tensor, bit for
// bit; on cpu the update equals the float32 formula rounded op by op, bit for bit (no FMA
// contraction on any ISA); and the argument checks. On cpu the AVX2 and SSE2 bodies (native/optim_spans.inc) also run
// in child processes with KESTREL_SIMD set (the addon reads the CPU features once per process).
// Tolerance: rtol 1e-5 / atol 1e-6: float32 rounding of a few operations on values of size ~1
// (an ulp is 1.2e-7), which a parameter that steps towards 0 keeps as absolute error.
import { ALL_DEVICES, type Device, skipUnless } from '../devices.js';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as k from '../../src/index.js';
import { assertClose, onCpuThreads, runChild, seeded } from '../helpers.js';

const CHILD = process.env.KESTREL_OPTIM_CHILD === '1';

/** param, grad, exp_avg, exp_avg_sq with seeded values (exp_avg_sq >= 0), on a backend. */
function state(backend: string, dtype: k.DType, n: number, seed: number): k.Tensor[] {
  const vals = [seeded(n, seed), seeded(n, seed + 1, -0.1, 0.1), seeded(n, seed + 2, -0.01, 0.01), seeded(n, seed + 3, 0, 1e-3)];
  return vals.map((v) => k.tensor(dtype === 'float32' ? Float32Array.from(v) : Float64Array.from(Float32Array.from(v)), { backend, dtype }));
}

function adamwSteps(d: Device, n: number, weightDecay: number, view: boolean): void {
  const [got, want] = [state(d, 'float32', n + (view ? 3 : 0), n), state('ref', 'float64', n + (view ? 3 : 0), n)];
  const pick = (ts: k.Tensor[]) => (view ? ts.map((t) => k.narrow(t, 0, 3, n)) : ts);
  const [g, w] = [pick(got), pick(want)];
  for (let t = 1; t <= 3; t++) {
    const s = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay, bc1: 1 - 0.9 ** t, bc2: 1 - 0.999 ** t };
    k.getBackend(d).kernels.adamw([{ param: g[0], grad: g[1], expAvg: g[2], expAvgSq: g[3] }], s);
    k.getBackend('ref').kernels.adamw([{ param: w[0], grad: w[1], expAvg: w[2], expAvgSq: w[3] }], s);
  }
  ['param', 'grad', 'exp_avg', 'exp_avg_sq'].forEach((what, i) =>
    assertClose(got[i], want[i], { atol: 1e-6, rtol: 1e-5, what: `${d} adamw n=${n} wd=${weightDecay}${view ? ' (view)' : ''} ${what}` }));
  for (const t of [...got, ...want]) t.dispose();
}

function threeSteps(device: Device): void {
  for (const n of [1, 7, 33, 257, 100003]) for (const wd of [0, 0.1]) adamwSteps(device, n, wd, false);
  adamwSteps(device, 257, 0.1, true);
}

function groupEqualsSingles(device: Device): void {
  const sizes = [1, 0, 7, 65536, 65537, 150000, 33];
  const s = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, bc1: 0.1, bc2: 0.001 };
  const [a, b] = [0, 1].map(() => sizes.map((n, i) => state(device, 'float32', n + 2, 40 + i).map((t) => k.narrow(t, 0, 2, n))));
  const entry = (ts: k.Tensor[]) => ({ param: ts[0], grad: ts[1], expAvg: ts[2], expAvgSq: ts[3] });
  const kern = k.getBackend(device).kernels;
  kern.adamw(a.map(entry), s);
  for (const ts of b) kern.adamw([entry(ts)], s);
  a.forEach((ts, i) => ts.forEach((t, j) => assert.deepEqual(t.toTypedArray(), b[i][j].toTypedArray(), `${device} size ${sizes[i]} tensor ${j}`)));
}

/**
 * The cpu kernel's update equals native/optim.cc's formula in float32 with every operation rounded on
 * its own (Math.fround after each; a product or sum of two float32 values is exact in a double here,
 * and a double sqrt or quotient rounded once is the correctly rounded float32 one), bit for bit: no
 * ISA contracts a multiply and an add into an FMA.
 */
function matchesFloat32Formula(): void {
  const f = Math.fround;
  const n = 257;
  const s = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, bc1: 1 - 0.9 ** 2, bc2: 1 - 0.999 ** 2 };
  const ts = state('cpu', 'float32', n, 7);
  const [P, G, M, V] = ts.map((t) => t.toTypedArray() as Float32Array);
  k.getBackend('cpu').kernels.adamw([{ param: ts[0], grad: ts[1], expAvg: ts[2], expAvgSq: ts[3] }], s);
  const [lr, b1, b2, eps, wd, bc1, bc2] = [s.lr, s.beta1, s.beta2, s.eps, s.weightDecay, s.bc1, s.bc2].map(f);
  const decay = f(1 - f(lr * wd)), step = f(lr / bc1), isb = f(1 / f(Math.sqrt(bc2))), c1 = f(1 - b1), c2 = f(1 - b2);
  const want = [new Float32Array(n), new Float32Array(n), new Float32Array(n)];
  for (let i = 0; i < n; i++) {
    const m = f(f(b1 * M[i]) + f(c1 * G[i]));
    const v = f(f(b2 * V[i]) + f(f(c2 * G[i]) * G[i]));
    want[0][i] = f(f(P[i] * decay) - f(f(step * m) / f(f(f(Math.sqrt(v)) * isb) + eps)));
    [want[1][i], want[2][i]] = [m, v];
  }
  [0, 2, 3].forEach((t, j) => assert.deepEqual(ts[t].toTypedArray(), want[j], `${['param', 'exp_avg', 'exp_avg_sq'][j]} differs from the float32 formula`));
  for (const t of ts) t.dispose();
}

if (CHILD) {
  onCpuThreads(() => {
    threeSteps('cpu');
    groupEqualsSingles('cpu');
    matchesFloat32Formula();
  });
} else {
  for (const device of ALL_DEVICES)
    describe(`adamw kernel on ${device}`, { skip: skipUnless(device) }, () => {
      test('three steps vs the float64 reference', () => threeSteps(device));

      test('a group in one call equals one call per tensor, bit for bit (sizes 0 to 150000, a view)', () => groupEqualsSingles(device));

      if (device === 'cpu') {
        test('the update equals the float32 formula rounded op by op, bit for bit (no FMA contraction)', () => matchesFloat32Formula());
        for (const simd of ['avx2', 'scalar'])
          test(`the checks under KESTREL_SIMD=${simd}, 1 and 2 threads (child process)`, () => {
            runChild(fileURLToPath(import.meta.url), { KESTREL_SIMD: simd, KESTREL_OPTIM_CHILD: '1' }, 60_000);
          });
      }

      test('bad arguments throw an Error naming the kernel and operand', () => {
        const kern = k.getBackend(device).kernels;
        const f32 = (n: number) => k.zeros([n], { backend: device });
        const s = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, bc1: 0.1, bc2: 0.001 };
        const one = (p: k.Tensor, g: k.Tensor, m: k.Tensor, v: k.Tensor) => [{ param: p, grad: g, expAvg: m, expAvgSq: v }];
        assert.throws(() => kern.adamw(one(f32(4), f32(5), f32(4), f32(4)), s), /adamw: grad must be a contiguous float32 tensor of 4 elements/);
        assert.throws(() => kern.adamw(one(f32(4), f32(4), k.zeros([4], { backend: device, dtype: 'float64' }), f32(4)), s), /adamw: exp_avg must be/);
        assert.throws(() => kern.adamw(one(f32(4), f32(4), f32(4), k.transpose(k.zeros([2, 2], { backend: device }), 0, 1)), s), /adamw: exp_avg_sq must be/);
      });
    });
}
