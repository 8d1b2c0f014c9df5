// conv1d (a composite of slice, stack and matmul): forward against the float64 definition
// y[b,o,t] = bias[o] + sum_{c,k} w[o,c,k] x[b,c,t stride + k dilation - padding] written out as loops, on
// odd sizes, strides, dilations and paddings; gradients of x, weight and bias by central differences in float64.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { conv1d } from '../../src/ops/conv.js';
import { assertClose, gradcheck, refLeaf } from '../helpers.js';

function conv1dLoops(x: Float64Array, w: Float64Array, b: Float64Array, dims: { B: number; Cin: number; T: number; Cout: number; K: number }, stride: number, padding: number, dilation = 1): Float64Array {
  const { B, Cin, T, Cout, K } = dims;
  const Tout = Math.floor((T + 2 * padding - (K - 1) * dilation - 1) / stride) + 1;
  const y = new Float64Array(B * Cout * Tout);
  for (let n = 0; n < B; n++)
    for (let o = 0; o < Cout; o++)
      for (let t = 0; t < Tout; t++) {
        let s = b[o];
        for (let c = 0; c < Cin; c++)
          for (let j = 0; j < K; j++) {
            const i = t * stride + j * dilation - padding;
            if (i >= 0 && i < T) s += w[(o * Cin + c) * K + j] * x[(n * Cin + c) * T + i];
          }
        y[(n * Cout + o) * Tout + t] = s;
      }
  return y;
}

test('conv1d equals its definition (float64 loops) on odd shapes, strides and paddings', () => {
  for (const [B, Cin, T, Cout, K, stride, padding, dilation] of [[1, 1, 1, 1, 1, 1, 0, 1], [2, 3, 7, 5, 3, 1, 1, 1], [1, 7, 33, 4, 3, 2, 1, 3], [3, 2, 257, 3, 5, 3, 2, 2]]) {
    k.tidy(() => {
      const x = refLeaf([B, Cin, T], 1);
      const w = refLeaf([Cout, Cin, K], 2);
      const b = refLeaf([Cout], 3);
      const y = conv1d(x, w, b, { stride, padding, dilation });
      const want = conv1dLoops(x.toTypedArray() as Float64Array, w.toTypedArray() as Float64Array, b.toTypedArray() as Float64Array, { B, Cin, T, Cout, K }, stride, padding, dilation);
      assert.deepEqual([...y.shape], [B, Cout, Math.floor((T + 2 * padding - (K - 1) * dilation - 1) / stride) + 1]);
      assertClose(y, want, { atol: 1e-12, rtol: 1e-12, what: `conv1d ${[B, Cin, T, Cout, K, stride, padding, dilation]}` });
    });
  }
});

test('conv1d gradients (x, weight, bias) match central differences in float64', () => {
  for (const [stride, padding, dilation] of [[1, 1, 1], [2, 1, 1], [1, 2, 2]]) {
    const x = refLeaf([2, 3, 9], 4);
    const w = refLeaf([4, 3, 3], 5);
    const b = refLeaf([4], 6);
    gradcheck((a, ww, bb) => conv1d(a, ww, bb, { stride, padding, dilation }), [x, w, b], { what: `conv1d stride ${stride} dilation ${dilation}` });
  }
});

test('conv1d names bad shapes', () => {
  assert.throws(() => conv1d(k.zeros([1, 3, 10]), k.zeros([2, 4, 3])), /x \[1, 3, 10\] must be \[B, Cin, T\] and weight \[2, 4, 3\]/);
  assert.throws(() => conv1d(k.zeros([1, 3, 2]), k.zeros([2, 3, 5])), /input length 2 \(padding 0\) is shorter than the kernel's span 5/);
});
