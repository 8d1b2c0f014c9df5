// convTranspose1d (matmul + overlap-add of shifted tap blocks) against its float64 definition
// y[b, o, t stride + k] += sum_c x[b, c, t] w[c, o, k] + bias[o] written as loops, on odd sizes and
// on kernels that are and are not multiples of the stride; gradients by central differences.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { convTranspose1d } from '../../src/ops/conv_transpose.js';
import { assertClose, gradcheck, refLeaf } from '../helpers.js';

function convTransposeLoops(x: Float64Array, w: Float64Array, b: Float64Array, d: { B: number; Cin: number; T: number; Cout: number; K: number; S: number }): Float64Array {
  const { B, Cin, T, Cout, K, S } = d;
  const Tout = (T - 1) * S + K;
  const y = new Float64Array(B * Cout * Tout);
  for (let n = 0; n < B; n++)
    for (let o = 0; o < Cout; o++) {
      for (let t = 0; t < Tout; t++) y[(n * Cout + o) * Tout + t] = b[o];
      for (let c = 0; c < Cin; c++)
        for (let t = 0; t < T; t++)
          for (let j = 0; j < K; j++) y[(n * Cout + o) * Tout + t * S + j] += x[(n * Cin + c) * T + t] * w[(c * Cout + o) * K + j];
    }
  return y;
}

test('convTranspose1d equals its definition (float64 loops) on odd shapes and strides', () => {
  for (const [B, Cin, T, Cout, K, S] of [[1, 1, 1, 1, 1, 1], [2, 3, 7, 5, 4, 2], [1, 7, 33, 2, 5, 3], [1, 2, 257, 3, 3, 5], [1, 4, 9, 3, 16, 8]]) {
    k.tidy(() => {
      const x = refLeaf([B, Cin, T], 1);
      const w = refLeaf([Cin, Cout, K], 2);
      const b = refLeaf([Cout], 3);
      const y = convTranspose1d(x, w, b, { stride: S });
      assert.deepEqual([...y.shape], [B, Cout, (T - 1) * S + K]);
      const want = convTransposeLoops(x.toTypedArray() as Float64Array, w.toTypedArray() as Float64Array, b.toTypedArray() as Float64Array, { B, Cin, T, Cout, K, S });
      assertClose(y, want, { atol: 1e-12, rtol: 1e-12, what: `convTranspose1d ${[B, Cin, T, Cout, K, S]}` });
    });
  }
});

test('convTranspose1d gradients (x, weight, bias) match central differences in float64', () => {
  for (const [K, S] of [[4, 2], [5, 3]]) {
    gradcheck((a, w, b) => convTranspose1d(a, w, b, { stride: S }), [refLeaf([2, 3, 5], 4), refLeaf([3, 2, K], 5), refLeaf([2], 6)], { what: `convTranspose1d K ${K} S ${S}` });
  }
});

test('convTranspose1d names bad shapes', () => {
  assert.throws(() => convTranspose1d(k.zeros([1, 3, 10]), k.zeros([2, 4, 3])), /x \[1, 3, 10\] must be \[B, Cin, T\] and weight \[2, 4, 3\] \[Cin, Cout, K\]/);
  assert.throws(() => convTranspose1d(k.zeros([1, 2, 10]), k.zeros([2, 4, 3]), null, { stride: 0 }), /stride must be an integer >= 1/);
});
