// linear with a bias runs as one GEMM accumulating onto the broadcast bias (src/ops/fused/linear.ts).
// It must equal linearComposite (matmul, then add) in float64 on the reference backend, forward and
// gradients, pass finite differences, and on the CPU backend match the float64 composite within
// float32 rounding on odd shapes (1, 7, 33, 257) with contiguous, transposed and strided inputs.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { linearComposite } from '../../src/ops/matmul.js';
import { canFuseLinear, linearFused } from '../../src/ops/fused/linear.js';
import { assertClose, gradcheck, hasCpu, like, refLeaf, seededTensor } from '../helpers.js';

const skipCpu = hasCpu() ? false : 'native addon not built';

/** y = linear(x, w, b) and its gradients for the weighting gy (so every output element counts). */
function run(f: typeof linearFused, x: k.Tensor, w: k.Tensor, b: k.Tensor, gy: k.Tensor) {
  for (const t of [x, w, b]) t.zeroGrad();
  const y = f(x, w, b);
  y.mul(gy).sum().backward();
  // copies: the next run's zeroGrad releases these gradients
  const copy = (t: k.Tensor | null): k.Tensor => t!.clone();
  return { y, dx: x.gradFn ? null : copy(x.grad), dw: copy(w.grad), db: copy(b.grad) };
}

describe('fused linear = composite (reference, float64)', () => {
  for (const [xs, N] of [[[7, 33], 5], [[2, 3, 7], 1], [[1, 257], 7], [[33], 3]] as [number[], number][])
    test(`x [${xs}] -> ${N} features`, () => {
      k.tidy(() => {
        const K = xs[xs.length - 1];
        const [x, w, b] = [refLeaf(xs, 1), refLeaf([N, K], 2), refLeaf([N], 3)];
        const gy = refLeaf([...xs.slice(0, -1), N], 4);
        const a = run(linearFused, x, w, b, gy);
        const c = run(linearComposite, x, w, b, gy);
        assertClose(a.y, c.y, { atol: 1e-12, rtol: 1e-12, what: 'forward' });
        assertClose(a.dx!, c.dx!, { atol: 1e-12, rtol: 1e-12, what: 'dx' });
        assertClose(a.dw, c.dw, { atol: 1e-12, rtol: 1e-12, what: 'dw' });
        assertClose(a.db, c.db, { atol: 1e-12, rtol: 1e-12, what: 'db' });
      });
    });

  test('finite differences in float64 (2-d, 3-d and a transposed input)', () => {
    k.tidy(() => {
      gradcheck((x, w, b) => linearFused(x, w, b), [refLeaf([3, 5], 1), refLeaf([4, 5], 2), refLeaf([4], 3)], { what: 'linear 2-d' });
      gradcheck((x, w, b) => linearFused(x, w, b), [refLeaf([2, 3, 5], 4), refLeaf([2, 5], 5), refLeaf([2], 6)], { what: 'linear 3-d' });
      gradcheck((x, w, b) => linearFused(x.t(), w, b), [refLeaf([5, 3], 7), refLeaf([4, 5], 8), refLeaf([4], 9)], { what: 'linear of xᵀ' });
    });
  });

  test('k.linear takes the fused path for float bias, the composite otherwise', () => {
    k.tidy(() => {
      const [x, w, b] = [refLeaf([2, 3], 1), refLeaf([4, 3], 2), refLeaf([4], 3)];
      assert.equal(canFuseLinear(x, w, b), true);
      assert.equal(canFuseLinear(x, w, null), false);
      assert.equal(k.autocast('bfloat16', () => canFuseLinear(x, w, b)), false); // the reference backend has no half GEMM
      assert.equal(canFuseLinear(x, w, b.to('float32')), false);
      assert.equal(k.linear(x, w, b).gradFn?.name, 'linear');
    });
  });

  test('a bias of the wrong length names both shapes', () => {
    k.tidy(() => {
      assert.throws(() => linearFused(refLeaf([2, 3]), refLeaf([4, 3]), refLeaf([5])), /linear: bias \[5\] does not match weight \[4, 3\]/);
    });
  });
});

describe('fused linear on the CPU backend (float32) = float64 composite', { skip: skipCpu }, () => {
  const cases: { name: string; x: (t: k.Tensor) => k.Tensor; shape: number[] }[] = [
    { name: 'contiguous [7, 33]', x: (t) => t, shape: [7, 33] },
    { name: 'contiguous [2, 33, 257]', x: (t) => t, shape: [2, 33, 257] },
    { name: 'one row [1, 1, 7]', x: (t) => t, shape: [1, 1, 7] },
    { name: 'transposed [257, 7]ᵀ', x: (t) => t.t(), shape: [257, 7] },
    { name: 'strided [3, 7, 66][..., ::2]', x: (t) => t.narrow(2, 0, 33), shape: [3, 7, 66] },
    { name: 'batch-transposed [7, 3, 33]', x: (t) => t.transpose(0, 1), shape: [7, 3, 33] },
  ];
  for (const N of [1, 7, 257])
    for (const c of cases)
      test(`${c.name} -> ${N} features`, () => {
        k.tidy(() => {
          const leaf = seededTensor(c.shape, 'float32', 'cpu', 11 + N).requiresGrad_();
          const x = c.x(leaf); // the view the op reads (its gradient flows back to the leaf)
          const K = x.shape[x.ndim - 1];
          const w = seededTensor([N, K], 'float32', 'cpu', 12).requiresGrad_();
          const b = seededTensor([N], 'float32', 'cpu', 13).requiresGrad_();
          const gy = seededTensor([...x.shape.slice(0, -1), N], 'float32', 'cpu', 14);
          leaf.zeroGrad();
          const got = run(linearFused, x, w, b, gy);
          const [x64, w64, b64, g64] = [x, w, b, gy].map((t) => like(t, 'ref', 'float64').requiresGrad_());
          const want = run(linearComposite, x64, w64, b64, g64);
          // float32 accumulation over K (or over the rows for dw, db) products of magnitude <= 1
          const tol = (n: number) => ({ atol: 8 * n * 2 ** -24, rtol: 1e-5 });
          const rows = got.y.numel / N;
          assertClose(got.y, want.y, { ...tol(K), what: 'forward' });
          assertClose(c.x(leaf.grad!), want.dx!, { ...tol(N), what: 'dx' });
          assertClose(got.dw, want.dw, { ...tol(rows), what: 'dw' });
          assertClose(got.db, want.db, { ...tol(rows), what: 'db' });
        });
      });
});

describe('fused linear under autocast(bfloat16) on the CPU = float64 product of the bf16-rounded operands + bias', { skip: skipCpu }, () => {
  /** the float64 value of t rounded to bf16 (the operand the half GEMM multiplies), on ref */
  const rounded = (t: k.Tensor): k.Tensor => k.noGrad(() => t.to('ref').to('bfloat16').to('float64'));
  for (const [xs, N] of [[[7, 33], 257], [[2, 33, 257], 7], [[1, 1, 7], 1]] as [number[], number][])
    test(`x [${xs}] -> ${N} features`, () => {
      k.tidy(() => {
        const K = xs[xs.length - 1];
        const x = seededTensor(xs, 'float32', 'cpu', 21).requiresGrad_();
        const w = seededTensor([N, K], 'float32', 'cpu', 22).requiresGrad_();
        const b = seededTensor([N], 'float32', 'cpu', 23).requiresGrad_();
        const gy = seededTensor([...xs.slice(0, -1), N], 'float32', 'cpu', 24);
        const y = k.autocast('bfloat16', () => {
          assert.equal(canFuseLinear(x, w, b), true);
          return k.linear(x, w, b);
        });
        assert.equal(y.dtype, 'float32');
        assert.equal(y.gradFn?.name, 'linear');
        y.backward(gy);
        // float32 accumulation of K exact products (bf16 x bf16 is exact in float32) and the bias
        const f32 = (n: number) => ({ atol: 4 * (Math.sqrt(n) + 1) * 2 ** -24 * (n + 1), rtol: 4 * 2 ** -24 * Math.sqrt(n) });
        const [xr, wr, gr] = [rounded(x), rounded(w), rounded(gy)];
        assertClose(y, k.matmul(xr, wr.t()).add(b.to('ref').to('float64')), { ...f32(K), what: 'forward' });
        // dx, dW: bf16 products of the bf16-rounded gradient, rounded to bf16 once, then cast back to float32
        const half = (n: number) => ({ atol: f32(n).atol, rtol: 2 ** -8 });
        assertClose(x.grad!, k.matmul(gr, wr), { ...half(N), what: 'dx' });
        assertClose(w.grad!, k.matmul(gr.reshape([-1, N]).t(), xr.reshape([-1, K])), { ...half(y.numel / N), what: 'dW' });
        // db: the float32 gradient summed over the rows in float32
        assertClose(b.grad!, gy.to('ref').to('float64').reshape([-1, N]).sum(0), { atol: 8 * (y.numel / N) * 2 ** -24, rtol: 1e-6, what: 'db' });
      });
    });
});
