// Fused linear + bias + GELU, BERT's intermediate dense (HF BertIntermediate): equals
// unary(act, linear(x, W, b)). The GEMM accumulates onto the broadcast bias (linearFused's
// forward) into z, one pass writes act(z); backward takes one pass over z and dy for both
//   dz = dy act'(z)   and   dbias = sum_rows dz
// (the composite makes two: the activation's gradient, then a reduction of dz), then
//   dx = dz W,   dW = dzᵀ x.
// Under k.autocast the GEMMs take half operands as linearFused's do, z stays float32, and act(z)
// is written in the autocast dtype directly (rounded once): the next linear would cast it to that
// dtype anyway, so the float32 copy and the cast pass are not made; dz is written in the same
// dtype for the half GEMMs while dbias sums the unrounded float32 values; dx and dW come out of the
// GEMMs in x's and W's own dtypes (linearInputGrads: float32 sums for a float32 x or W).
// Taken where the backend has encoder kernels and linear itself fuses (canFuseLinear); else the composite.
import { backendOf } from '../../backend/index.js';
import type { GluActivation } from '../../backend/kernels.js';
import { autocastDtype } from '../../tensor/autocast.js';
import { tidy } from '../../tensor/scope.js';
import type { Tensor } from '../../tensor/tensor.js';
import { emptyLike, needsGrad, record, save } from '../dispatch.js';
import { unary } from '../elementwise.js';
import { linear } from '../matmul.js';
import { contiguous, reshape } from '../view.js';
import { biasedProduct, canFuseLinear, gemmOperands, linearInputGrads } from './linear.js';

export type GeluActivation = Extract<GluActivation, 'gelu_erf' | 'gelu_tanh'>;

/**
 * act(x Wᵀ + b) with the bias gradient summed in the activation's backward pass.
 * @example linearGelu(h, layer.intermediate.dense.weight, layer.intermediate.dense.bias, 'gelu_erf')  // [B, T, D] -> [B, T, F]
 */
export function linearGelu(x: Tensor, weight: Tensor, bias: Tensor, act: GeluActivation): Tensor {
  const enc = backendOf(x).encoder;
  const dt = autocastDtype() ? 'float32' : x.dtype;
  if (!enc || !canFuseLinear(x, weight, bias) || !enc.dtypes.includes(dt)) return tidy(() => unary(act, linear(x, weight, bias)));
  return tidy(() => {
    const { xh, wh } = gemmOperands('linearGelu', x, weight, bias);
    const { x2, y2: z } = biasedProduct(xh, wh, bias);
    const [M, N] = z.shape;
    const y2 = emptyLike(z, [M, N], autocastDtype() ?? z.dtype);
    enc.biasGelu(act, z, y2);
    const y = reshape(y2, [...x.shape.slice(0, -1), N]);
    if (!needsGrad(x, weight, bias)) return y;
    const [sx, sw, sz] = [save(x2), save(wh), save(z)];
    return record('linearGelu', y, [x, weight, bias], (g) => {
      const g2 = contiguous(reshape(g, [M, N]));
      const dz = emptyLike(g2, [M, N], sx.dtype); // the GEMM operands' dtype (half under autocast)
      const db = bias.requiresGrad ? emptyLike(sz, [N]) : null;
      enc.biasGeluBackward(act, sz, g2, dz, db);
      return [...linearInputGrads(dz, sx, sw, x, weight), db];
    }, [sx, sw, sz]);
  });
}
