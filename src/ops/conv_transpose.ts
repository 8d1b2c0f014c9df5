// 1-d transposed convolution (torch.nn.functional.conv_transpose1d, groups 1, no padding) as a
// composite: one matmul gives every input frame's K output taps, then the taps are overlap-added.
// With K padded up to m strides, tap block j (kernel taps j S .. j S + S - 1) of frame t lands on
// outputs (t + j) S .. (t + j) S + S - 1, so block j is a [T S] run shifted by j S: m shifted runs
// summed. Gradients come from matmul, reshape, permute and cat.
import { shapeStr } from '../tensor/layout.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { zeros } from './creation.js';
import { add } from './elementwise.js';
import { cat } from './indexing.js';
import { matmul } from './matmul.js';
import { narrow, permute, reshape, squeeze, transpose, unsqueeze } from './view.js';

/**
 * y[b, o, t stride + k] += sum_c x[b, c, t] w[c, o, k] (+ bias[o]); output length (T - 1) stride + K.
 * @example convTranspose1d(x, w, b, { stride: 8 })  // x [1, 32, 75], w [32, 16, 16] -> [1, 16, 608]
 */
export function convTranspose1d(x: Tensor, weight: Tensor, bias: Tensor | null = null, opts: { stride?: number } = {}): Tensor {
  const stride = opts.stride ?? 1;
  if (x.ndim !== 3 || weight.ndim !== 3 || x.shape[1] !== weight.shape[0])
    throw new Error(`convTranspose1d: x ${shapeStr(x.shape)} must be [B, Cin, T] and weight ${shapeStr(weight.shape)} [Cin, Cout, K] with the same Cin`);
  if (!Number.isInteger(stride) || stride < 1) throw new Error(`convTranspose1d: stride must be an integer >= 1, got ${stride}`);
  const [B, Cin, T] = x.shape;
  const [, Cout, K] = weight.shape;
  const m = Math.ceil(K / stride); // tap blocks of one stride each
  const Tout = (T - 1) * stride + K;
  return tidy(() => {
    const opt = { dtype: x.dtype, backend: x.backendName };
    // [Cin, Cout, K] -> [Cout, m S, Cin], the kernel zero-extended to m strides
    let w = permute(weight, [1, 2, 0]);
    if (m * stride > K) w = cat([w, zeros([Cout, m * stride - K, Cin], opt)], 1);
    const taps = matmul(reshape(w, [Cout * m * stride, Cin]), x); // [B, Cout m S, T]
    const blocks = reshape(taps, [B, Cout, m, stride, T]);
    let y: Tensor | null = null;
    for (let j = 0; j < m; j++) {
      // block j as a run over time: [B, Cout, S, T] -> [B, Cout, T, S] -> [B, Cout, T S], shifted by j S
      const run = reshape(transpose(squeeze(narrow(blocks, 2, j, 1), 2), 2, 3), [B, Cout, T * stride]);
      const parts = [run];
      if (j > 0) parts.unshift(zeros([B, Cout, j * stride], opt));
      if (m - 1 - j > 0) parts.push(zeros([B, Cout, (m - 1 - j) * stride], opt));
      const placed = parts.length > 1 ? cat(parts, 2) : run; // [B, Cout, (T + m - 1) S]
      y = y ? add(y, placed) : placed;
    }
    const out = narrow(y!, 2, 0, Tout);
    return bias ? add(out, unsqueeze(bias, -1)) : out;
  });
}
