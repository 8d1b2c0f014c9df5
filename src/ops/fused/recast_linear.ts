// Linear without bias under k.autocast with a float32 weight: y = half(x) half(W)ᵀ, equal bit for
// bit to linearComposite under autocast in y and dx (the same rounding, the same GEMM products); dW is
// the half GEMM's float32 sums, which the composite rounds to half and widens again (as the fused
// linears with a bias do, linear.ts), but the half copy of W is not held from forward to backward: backward rounds the float32 weight to
// half again. Full fine-tuning under bf16 autocast otherwise keeps a bf16 copy of every weight (2 bytes
// per parameter, ~270 MB on smol135m) alive as activation memory until its layer's backward, which is
// what torch.autocast's weight cache does too. Re-rounding costs one pass over the weight per backward.
// Backward, with xh = half(x) as rows [M, K], g [M, N] (half, the product's dtype), Wh = half(W) [N, K]:
//   dxh = g Wh    (widened to x's dtype by the cast's own backward)
//   dW  = gᵀ xh, float32 sums (rows [M, N] and [M, K]: W's [N, K] layout, contiguous)
// The weight must not change between forward and backward (an optimizer step runs after backward, and
// optimizer-in-backward updates W only once its gradient is final, after this backward).
// On a backend whose GEMM rounds a float32 operand while packing it (Backend.halfMatmulFloatB, the
// CPU's), neither pass writes a half copy of W: forward and backward multiply by W itself.
import { backendOf } from '../../backend/index.js';
import { autocastDtype } from '../../tensor/autocast.js';
import { type DType, isFloat } from '../../tensor/dtype.js';
import { noGrad } from '../../tensor/grad_mode.js';
import { tidy } from '../../tensor/scope.js';
import type { Tensor } from '../../tensor/tensor.js';
import { emptyLike, needsGrad, record, save } from '../dispatch.js';
import { to } from '../elementwise.js';
import { contiguous, reshape, transpose } from '../view.js';
import { gemmReadable, matmul, matmulInto } from '../matmul.js';
import { productAs } from './linear.js';
import { sumToShape } from '../reduce.js';

/**
 * True when linear(x, weight, bias) takes linearRecast: autocast on, no bias, a float32 weight that
 * needs its gradient; or, where the GEMM rounds a float32 weight itself (halfMatmulFloatB), any
 * float32 weight in a pass that records nothing (a checkpointed layer's first forward, generation),
 * which the composite would first cast in its transposed layout (a strided pass over W).
 */
export function canRecastLinear(x: Tensor, weight: Tensor, bias: Tensor | null | undefined): boolean {
  const ac = autocastDtype();
  if (ac === null || bias || weight.dtype !== 'float32' || !isFloat(x.dtype) || backendOf(x).halfMatmul !== true) return false;
  if (!needsGrad(x, weight)) return backendOf(x).halfMatmulFloatB === true;
  return weight.requiresGrad;
}

/**
 * W rounded to half in its own [out, in] layout (a streaming cast; rounding transpose(W) instead reads
 * W with a stride and took a third of a smol135m step), handed to the GEMM as the transposed view.
 */
const half = (weight: Tensor, ac: DType): Tensor => noGrad(() => to(weight, ac));

/**
 * a [..., K] (of the autocast dtype) times the float32 weight (transposed: a Wᵀ, else a W) rounded to
 * half. Where the backend's GEMM rounds a float32 operand as it packs it (halfMatmulFloatB) no half
 * copy of W is written at all; else W is cast in its own layout first. The same bits either way.
 */
function timesHalfWeight(a: Tensor, weight: Tensor, transposed: boolean, ac: DType): Tensor {
  const be = backendOf(a);
  if (!be.halfMatmulFloatB || a.dtype !== ac) {
    const wh = half(weight, ac);
    return matmul(a, transposed ? transpose(wh) : wh);
  }
  const b = transposed ? transpose(weight) : weight;
  const [K, N] = b.shape;
  // a half a and a float32 b: the GEMM rounds b while packing and writes the product in ac
  const out = emptyLike(a, [a.numel / K, N], ac);
  matmulInto(reshape(a, [-1, K]), b, out, false);
  return reshape(out, [...a.shape.slice(0, -1), N]);
}

/**
 * x Wᵀ under autocast, holding x's half copy but not W's (see the file comment).
 * @example k.autocast('bfloat16', () => linearRecast(x, layer.weight))  // [B, T, in] -> [B, T, out] bf16
 */
export function linearRecast(x: Tensor, weight: Tensor): Tensor {
  const ac = autocastDtype();
  if (!ac) throw new Error('linearRecast: needs k.autocast (it equals linear under autocast)');
  return tidy(() => {
    // the cast carries dx back to x's dtype, as in the composite
    const cast = x.dtype === ac ? x : to(x, ac);
    const xh = gemmReadable(cast) ? cast : contiguous(cast);
    const y = noGrad(() => tidy(() => timesHalfWeight(xh, weight, true, ac)));
    if (!needsGrad(xh, weight)) return y;
    const sx = save(xh);
    const [N, K] = weight.shape;
    // autograd runs backward in a scope: a re-rounded weight (backends that cast first) is freed with it
    return record('linear', y, [xh, weight], (g) => [
      xh.requiresGrad ? sumToShape(timesHalfWeight(g, weight, false, ac), sx.shape) : null,
      // gᵀ xh in W's own [out, in] layout (contiguous: the optimizer reads it as it is) and as the half
      // GEMM's float32 sums, written by the GEMM: no bf16 rounding of the weight gradient and no widening pass
      productAs(transpose(reshape(g, [-1, N])), reshape(sx, [-1, K]), 'float32'),
    ], [sx]);
  });
}
