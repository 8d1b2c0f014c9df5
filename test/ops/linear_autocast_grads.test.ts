// Under bf16 autocast the fused linear (and linear + GELU) record against the float32 x and W
// themselves, not against their bf16 casts: dx and dW are the half GEMMs' float32 sums, never
// rounded to bf16. The correct answer: the float64 products of the bf16-rounded gradient and
// operands, to float32 accumulation error (bf16 x bf16 products are exact in float32), which a bf16
// rounding of dx or dW (relative error up to 2^-9) would fail. Odd shapes (1, 7, 33, 257) and a
// transposed (non-contiguous) input.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { linearGelu } from '../../src/ops/fused/linear_gelu.js';
import { assertClose, hasCpu, seededTensor } from '../helpers.js';

const skip = hasCpu() ? false : 'native addon not built';
/** t's values rounded to bf16, as float64 on the reference backend */
const bf = (t: k.Tensor): k.Tensor => k.noGrad(() => t.to('ref').to('bfloat16').to('float64'));
/** float32 accumulation of n exact products: a bf16 rounding (2^-9 relative) is far outside it */
const f32 = (n: number, scale: number) => ({ atol: 4 * (Math.sqrt(n) + 1) * 2 ** -24 * scale, rtol: 2 ** -16 });

describe('autocast(bfloat16) linear gradients are float32 sums of bf16 products', { skip }, () => {
  for (const [M, K, N] of [[1, 7, 1], [7, 33, 257], [257, 33, 7], [33, 257, 33]])
    for (const transposed of [false, true])
      test(`x [${M}, ${K}]${transposed ? ' (transposed view)' : ''} -> ${N}`, () => {
        k.tidy(() => {
          const leaf = seededTensor(transposed ? [K, M] : [M, K], 'float32', 'cpu', 31).requiresGrad_();
          const x = transposed ? leaf.t() : leaf;
          const w = seededTensor([N, K], 'float32', 'cpu', 32).requiresGrad_();
          const b = seededTensor([N], 'float32', 'cpu', 33).requiresGrad_();
          const gy = seededTensor([M, N], 'float32', 'cpu', 34);
          const y = k.autocast('bfloat16', () => k.linear(x, w, b));
          // the tape goes from y straight to x and W: no cast op between them
          assert.equal(y.gradFn?.name, 'linear');
          y.backward(gy);
          assert.equal(w.grad!.dtype, 'float32');
          const [xr, wr, gr] = [bf(x), bf(w), bf(gy)];
          const dx = transposed ? leaf.grad!.t() : leaf.grad!;
          assertClose(dx, k.matmul(gr, wr), { ...f32(N, 1), what: 'dx' });
          assertClose(w.grad!, k.matmul(gr.t(), xr), { ...f32(M, 1), what: 'dW' });
        });
      });

  test('linear + GELU: dx and dW are float32 sums of the bf16 dz the kernel wrote times the bf16 operands', () => {
    k.tidy(() => {
      const x = seededTensor([33, 65], 'float32', 'cpu', 41, -2, 2).requiresGrad_();
      const w = seededTensor([257, 65], 'float32', 'cpu', 42).requiresGrad_();
      const b = seededTensor([257], 'float32', 'cpu', 43).requiresGrad_();
      const gy = seededTensor([33, 257], 'float32', 'cpu', 44);
      const y = k.autocast('bfloat16', () => linearGelu(x, w, b, 'gelu_erf'));
      assert.equal(y.gradFn?.name, 'linearGelu');
      // the dz the kernel wrote (bf16), captured as the GEMMs read it
      const enc = k.getBackend('cpu').encoder!;
      const backward = enc.biasGeluBackward;
      let dz: k.Tensor | null = null;
      Object.assign(enc, { biasGeluBackward: (...a: Parameters<typeof backward>) => (backward.apply(enc, a), (dz = k.keep(bf(a[3] as k.Tensor)))) });
      try {
        y.backward(gy);
      } finally {
        Object.assign(enc, { biasGeluBackward: backward });
      }
      assert.equal(dz!.shape.join(), '33,257');
      assert.equal(x.grad!.dtype, 'float32');
      assertClose(x.grad!, k.matmul(dz!, bf(w)), { ...f32(257, 1), what: 'dx' });
      assertClose(w.grad!, k.matmul(dz!.t(), bf(x)), { ...f32(33, 1), what: 'dW' });
      dz!.dispose();
    });
  });
});
