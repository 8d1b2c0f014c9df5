// 1-d convolution (torch.nn.functional.conv1d, groups 1, zero padding) as a composite: the K
// taps are strided slices of the padded input stacked into columns [B, Cin K, Tout] (im2col),
// then one matmul with the weight [Cout, Cin K]. Its gradients come from slice, cat and matmul.
// Dilation spaces the taps (EnCodec's residual blocks use it).
import { shapeStr } from '../tensor/layout.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { zeros } from './creation.js';
import { add } from './elementwise.js';
import { cat, stack } from './indexing.js';
import { matmul } from './matmul.js';
import { reshape, slice, unsqueeze } from './view.js';

export interface Conv1dOptions {
  /** default 1 */
  stride?: number;
  /** zeros on each side, default 0 */
  padding?: number;
  /** spacing between kernel taps, default 1 */
  dilation?: number;
}

/**
 * y[b, o, t] = bias[o] + sum_{c, k} w[o, c, k] x[b, c, t stride + k dilation - padding].
 * @example conv1d(mel, w, b, { padding: 1 })  // [1, 80, 3000] with w [64, 80, 3] -> [1, 64, 3000]
 */
export function conv1d(x: Tensor, weight: Tensor, bias: Tensor | null = null, opts: Conv1dOptions = {}): Tensor {
  const stride = opts.stride ?? 1;
  const padding = opts.padding ?? 0;
  const dilation = opts.dilation ?? 1;
  if (x.ndim !== 3 || weight.ndim !== 3 || x.shape[1] !== weight.shape[1])
    throw new Error(`conv1d: x ${shapeStr(x.shape)} must be [B, Cin, T] and weight ${shapeStr(weight.shape)} [Cout, Cin, K] with the same Cin`);
  if (![stride, dilation].every((v) => Number.isInteger(v) && v >= 1) || !Number.isInteger(padding) || padding < 0)
    throw new Error(`conv1d: stride and dilation must be integers >= 1 and padding >= 0, got ${stride}, ${dilation} and ${padding}`);
  const [B, Cin, T] = x.shape;
  const [Cout, , K] = weight.shape;
  const span = (K - 1) * dilation + 1; // the kernel's extent over the input
  const Tout = Math.floor((T + 2 * padding - span) / stride) + 1;
  if (Tout < 1) throw new Error(`conv1d: input length ${T} (padding ${padding}) is shorter than the kernel's span ${span}`);
  return tidy(() => {
    const pad = (): Tensor => zeros([B, Cin, padding], { dtype: x.dtype, backend: x.backendName });
    const xp = padding ? cat([pad(), x, pad()], 2) : x;
    const taps = Array.from({ length: K }, (_, k) => slice(xp, 2, k * dilation, k * dilation + stride * (Tout - 1) + 1, stride)); // K x [B, Cin, Tout]
    const cols = reshape(stack(taps, 2), [B, Cin * K, Tout]); // [B, Cin, K, Tout] -> rows in weight's (c, k) order
    const y = matmul(reshape(weight, [Cout, Cin * K]), cols); // [B, Cout, Tout]
    return bias ? add(y, unsqueeze(bias, -1)) : y;
  });
}
