// The fused encoder-layer ops (src/ops/fused/add_layer_norm.ts, linear_gelu.ts) must equal their
// composites: LayerNorm(add(x, residual)) and unary(act, linear(x, W, b)). On the reference backend
// in float64 they match the composite to rounding and pass finite differences; on the CPU backend
// (native/encoder_fused.cc) float32 results match the float64 composite within float32 rounding on
// odd sizes (1, 7, 33, 257) that break the vector tails, with non-contiguous inputs; under
// autocast(bfloat16) the activation is the float32 value rounded once to bf16.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { addLayerNorm } from '../../src/ops/fused/add_layer_norm.js';
import { type GeluActivation, linearGelu } from '../../src/ops/fused/linear_gelu.js';
import { linearComposite } from '../../src/ops/matmul.js';
import { layerNormComposite } from '../../src/ops/norm.js';
import { assertClose, gradcheck, hasCpu, like, refLeaf, seededTensor } from '../helpers.js';

const skipCpu = hasCpu() ? false : 'native addon not built';
const ACTS: GeluActivation[] = ['gelu_erf', 'gelu_tanh'];

/** f(...xs) weighted by gy, summed and differentiated: the output and every input's gradient (copies). */
function run(f: (...xs: k.Tensor[]) => k.Tensor, xs: k.Tensor[], gy: k.Tensor): { y: k.Tensor; grads: (k.Tensor | null)[] } {
  for (const t of xs) t.zeroGrad();
  const y = f(...xs);
  y.mul(gy).sum().backward();
  return { y, grads: xs.map((t) => (t.grad ? t.grad.clone() : null)) };
}

const addNormComposite = (x: k.Tensor, r: k.Tensor, w: k.Tensor, b: k.Tensor): k.Tensor => layerNormComposite(x.add(r), w, b, 1e-5);
const addNormFused = (x: k.Tensor, r: k.Tensor, w: k.Tensor, b: k.Tensor): k.Tensor => addLayerNorm(x, r, w, b, 1e-5);
const geluComposite = (act: GeluActivation) => (x: k.Tensor, w: k.Tensor, b: k.Tensor): k.Tensor => k.unary(act, linearComposite(x, w, b));
const geluFused = (act: GeluActivation) => (x: k.Tensor, w: k.Tensor, b: k.Tensor): k.Tensor => linearGelu(x, w, b, act);

describe('fused add + LayerNorm = composite (reference, float64)', () => {
  for (const xs of [[7, 33], [2, 3, 7], [1, 257], [33]])
    test(`x [${xs}]`, () => {
      k.tidy(() => {
        const D = xs[xs.length - 1];
        const ins = [refLeaf(xs, 1, -2, 2), refLeaf(xs, 2), refLeaf([D], 3, 0.5, 1.5), refLeaf([D], 4)];
        const gy = refLeaf(xs, 5);
        const a = run(addNormFused, ins, gy);
        const c = run(addNormComposite, ins, gy);
        assert.equal(a.y.gradFn?.name, 'addLayerNorm');
        assertClose(a.y, c.y, { atol: 1e-12, rtol: 1e-10, what: 'forward' });
        a.grads.forEach((g, i) => assertClose(g!, c.grads[i]!, { atol: 1e-12, rtol: 1e-10, what: `grad ${i}` }));
      });
    });

  test('finite differences in float64 (contiguous, a transposed input, a transposed residual)', () => {
    k.tidy(() => {
      const p = (): k.Tensor[] => [refLeaf([5], 3, 0.5, 1.5), refLeaf([5], 4)];
      gradcheck(addNormFused, [refLeaf([3, 5], 1, -2, 2), refLeaf([3, 5], 2), ...p()], { what: 'addLayerNorm' });
      gradcheck((x, r, w, b) => addNormFused(x.t(), r, w, b), [refLeaf([5, 3], 6, -2, 2), refLeaf([3, 5], 7), ...p()], { what: 'addLayerNorm of xᵀ' });
      gradcheck((x, r, w, b) => addNormFused(x, r.t(), w, b), [refLeaf([3, 5], 8, -2, 2), refLeaf([5, 3], 9), ...p()], { what: 'addLayerNorm of residualᵀ' });
    });
  });

  test('one input used as both x and residual accumulates both gradients', () => {
    k.tidy(() => {
      const [x, w, b] = [refLeaf([3, 5], 1), refLeaf([5], 2, 0.5, 1.5), refLeaf([5], 3)];
      gradcheck((t, ww, bb) => addNormFused(t, t.mul(0.5), ww, bb), [x, w, b], { what: 'x + x/2' });
    });
  });

  test('mismatched shapes name both', () => {
    k.tidy(() => {
      assert.throws(() => addLayerNorm(refLeaf([2, 3]), refLeaf([3, 2]), null, null, 1e-5), /addLayerNorm: input \[2, 3\] and residual \[3, 2\]/);
      assert.throws(() => addLayerNorm(refLeaf([2, 3]), refLeaf([2, 3]), refLeaf([4]), null, 1e-5), /addLayerNorm: weight \[4\] does not match the last dim of input \[2, 3\]/);
    });
  });
});

describe('fused linear + GELU = composite (reference, float64)', () => {
  for (const act of ACTS)
    for (const [xs, N] of [[[7, 33], 5], [[2, 3, 7], 1], [[1, 257], 7]] as [number[], number][])
      test(`${act}: x [${xs}] -> ${N}`, () => {
        k.tidy(() => {
          const K = xs[xs.length - 1];
          const ins = [refLeaf(xs, 1), refLeaf([N, K], 2), refLeaf([N], 3)];
          const gy = refLeaf([...xs.slice(0, -1), N], 4);
          const a = run(geluFused(act), ins, gy);
          const c = run(geluComposite(act), ins, gy);
          assert.equal(a.y.gradFn?.name, 'linearGelu');
          assertClose(a.y, c.y, { atol: 1e-12, rtol: 1e-10, what: 'forward' });
          a.grads.forEach((g, i) => assertClose(g!, c.grads[i]!, { atol: 1e-12, rtol: 1e-10, what: `grad ${i}` }));
        });
      });

  test('finite differences in float64 (erf and tanh, a transposed input)', () => {
    k.tidy(() => {
      for (const act of ACTS) {
        gradcheck(geluFused(act), [refLeaf([3, 5], 1, -2, 2), refLeaf([4, 5], 2), refLeaf([4], 3)], { what: `linearGelu ${act}` });
        gradcheck((x, w, b) => linearGelu(x.t(), w, b, act), [refLeaf([5, 3], 4, -2, 2), refLeaf([4, 5], 5), refLeaf([4], 6)], { what: `linearGelu ${act} of xᵀ` });
      }
    });
  });

  test('a weight that does not match the input names both shapes', () => {
    k.tidy(() => {
      assert.throws(() => linearGelu(refLeaf([2, 3]), refLeaf([4, 5]), refLeaf([4]), 'gelu_erf'), /linearGelu: input \[2, 3\] does not match weight \[4, 5\]/);
    });
  });
});

// float32 tolerance for sums of n terms of magnitude <= ~4
const f32 = (n: number) => ({ atol: 16 * (n + 1) * 2 ** -24, rtol: 1e-5 });

describe('fused add + LayerNorm on the CPU backend (float32) = float64 composite', { skip: skipCpu }, () => {
  const views: { name: string; view: (t: k.Tensor) => k.Tensor; shape: (rows: number, D: number) => number[] }[] = [
    { name: 'contiguous', view: (t) => t, shape: (r, D) => [r, D] },
    { name: 'transposed', view: (t) => t.t(), shape: (r, D) => [D, r] },
    { name: 'strided columns', view: (t) => t.narrow(1, 1, t.shape[1] - 1), shape: (r, D) => [r, D + 1] },
  ];
  for (const D of [1, 7, 33, 257])
    for (const v of views)
      test(`rows 7, D ${D}, ${v.name} input`, () => {
        k.tidy(() => {
          const leaf = seededTensor(v.shape(7, D), 'float32', 'cpu', D, -3, 3).requiresGrad_();
          const x = v.view(leaf);
          const r = seededTensor([7, D], 'float32', 'cpu', D + 1).requiresGrad_();
          const w = seededTensor([D], 'float32', 'cpu', D + 2, 0.5, 1.5).requiresGrad_();
          const b = seededTensor([D], 'float32', 'cpu', D + 3).requiresGrad_();
          const gy = seededTensor([7, D], 'float32', 'cpu', D + 4);
          leaf.zeroGrad();
          const got = run(addNormFused, [x, r, w, b], gy);
          const want = run(addNormComposite, [x, r, w, b].map((t) => like(t, 'ref', 'float64').requiresGrad_()), like(gy, 'ref', 'float64'));
          assertClose(got.y, want.y, { ...f32(D), what: 'forward' });
          assertClose(v.view(leaf.grad!), want.grads[0]!, { ...f32(D), what: 'dx' });
          assertClose(got.grads[1]!, want.grads[1]!, { ...f32(D), what: 'dresidual' });
          assertClose(got.grads[2]!, want.grads[2]!, { ...f32(7 * D), what: 'dweight' });
          assertClose(got.grads[3]!, want.grads[3]!, { ...f32(7), what: 'dbias' });
        });
      });

  test('257 rows (the thread split of the rows) without weight and bias', () => {
    k.tidy(() => {
      const [x, r] = [seededTensor([257, 33], 'float32', 'cpu', 1, -3, 3), seededTensor([257, 33], 'float32', 'cpu', 2)];
      const got = addLayerNorm(x, r, null, null, 1e-5);
      const want = layerNormComposite(like(x, 'ref', 'float64').add(like(r, 'ref', 'float64')), null, null, 1e-5);
      assertClose(got, want, { ...f32(33), what: 'forward' });
    });
  });

});

describe('fused linear + GELU on the CPU backend (float32) = float64 composite', { skip: skipCpu }, () => {
  for (const act of ACTS)
    for (const N of [1, 7, 33, 257])
      for (const transposed of [false, true])
        test(`${act}: x [33, 7]${transposed ? 'ᵀ-view' : ''} -> ${N}`, () => {
          k.tidy(() => {
            const leaf = seededTensor(transposed ? [7, 33] : [33, 7], 'float32', 'cpu', N, -2, 2).requiresGrad_();
            const x = transposed ? leaf.t() : leaf;
            const w = seededTensor([N, 7], 'float32', 'cpu', N + 1).requiresGrad_();
            const b = seededTensor([N], 'float32', 'cpu', N + 2).requiresGrad_();
            const gy = seededTensor([33, N], 'float32', 'cpu', N + 3);
            leaf.zeroGrad();
            const got = run(geluFused(act), [x, w, b], gy);
            assert.equal(got.y.gradFn?.name, 'linearGelu');
            const want = run(geluComposite(act), [x, w, b].map((t) => like(t, 'ref', 'float64').requiresGrad_()), like(gy, 'ref', 'float64'));
            assertClose(got.y, want.y, { ...f32(7), what: 'forward' });
            assertClose(transposed ? leaf.grad!.t() : leaf.grad!, want.grads[0]!, { ...f32(N), what: 'dx' });
            assertClose(got.grads[1]!, want.grads[1]!, { ...f32(33), what: 'dW' });
            assertClose(got.grads[2]!, want.grads[2]!, { ...f32(33), what: 'db' });
          });
        });
});

describe('fused linear + GELU under autocast(bfloat16) on the CPU', { skip: skipCpu }, () => {
  /** t's values rounded to bf16, as float64 on the reference backend */
  const bf = (t: k.Tensor): k.Tensor => k.noGrad(() => t.to('ref').to('bfloat16').to('float64'));
  for (const N of [7, 257])
    test(`x [2, 33, 65] -> ${N}: the activation is the float32 path rounded once; gradients from the bf16-rounded dz`, () => {
      k.tidy(() => {
        const x = seededTensor([2, 33, 65], 'float32', 'cpu', 1, -2, 2).requiresGrad_();
        const w = seededTensor([N, 65], 'float32', 'cpu', 2).requiresGrad_();
        const b = seededTensor([N], 'float32', 'cpu', 3).requiresGrad_();
        const gy = seededTensor([2, 33, N], 'float32', 'cpu', 4);
        const ac = <T>(f: () => T): T => k.autocast('bfloat16', f);
        const got = ac(() => run(geluFused('gelu_erf'), [x, w, b], gy));
        assert.equal(got.y.dtype, 'bfloat16');
        // forward: k.linear's half GEMM onto the float32 bias, the same activation code, one rounding
        const zf = ac(() => k.noGrad(() => k.linear(x, w, b)));
        assert.deepEqual([...got.y.toFloat32Array()], [...k.unary('gelu_erf', zf).to('bfloat16').toFloat32Array()]);
        // backward in float64 from the definition: y is bf16, so its incoming gradient is bf16(gy);
        // dz = bf16(bf16(gy) gelu'(z)) feeds the half GEMMs (each result rounded to bf16 once);
        // db sums the unrounded dz
        const z = like(zf, 'ref', 'float64').reshape([-1, N]).requiresGrad_();
        k.unary('gelu_erf', z).mul(bf(gy).reshape([-1, N])).sum().backward();
        const dz = z.grad!;
        const [xr, wr] = [bf(x).reshape([-1, 65]), bf(w)];
        const half = (n: number) => ({ atol: 2 ** -9 * Math.sqrt(n), rtol: 2 ** -7 });
        assertClose(got.grads[0]!.reshape([-1, 65]), k.matmul(bf(dz), wr), { ...half(N), what: 'dx' });
        assertClose(got.grads[1]!, k.matmul(bf(dz).t(), xr), { ...half(66), what: 'dW' });
        assertClose(got.grads[2]!, dz.sum(0), { atol: 1e-5, rtol: 1e-5, what: 'db' });
      });
    });
});

describe('native encoder kernels reject bad input', { skip: skipCpu }, () => {
  test('a float64 z and mismatched shapes name the kernel, the field and the shape', () => {
    k.tidy(() => {
      const enc = k.getBackend('cpu').encoder!;
      const z = seededTensor([3, 4], 'float64', 'cpu', 1);
      const out = seededTensor([3, 4], 'float32', 'cpu', 2);
      assert.throws(() => enc.biasGelu('gelu_erf', z, out), /bias_gelu: z must be float32, got float64 \[3,4\]/);
      const x = seededTensor([3, 4], 'float32', 'cpu', 3);
      const r = seededTensor([3, 5], 'float32', 'cpu', 4);
      const m = seededTensor([3], 'float32', 'cpu', 5);
      assert.throws(() => enc.addLayerNorm(x, r, null, null, 1e-5, out, out, m, m), /add_layer_norm: .*residual/);
    });
  });
});
