// Fused linear with bias: y = x Wᵀ + b, equal to linearComposite (matmul, then a broadcast add).
// Where the backend's GEMM has a bias epilogue (Kernels.matmulBias: on the CPU for float32, the
// bias written into each block of the output in cache just before its products; cuBLASLt's on the
// GPU) the GEMM starts from the bias itself; elsewhere (or KESTREL_BIAS_EPILOGUE=0) the bias is
// copied into the output rows first and the GEMM accumulates onto it (beta = 1), as BLAS callers
// and PyTorch's addmm do.
// Either way no second [rows, out] tensor is allocated, written and read back for the add. Backward, with x and g flattened to rows ([M, in], [M, out]):
//   dx = g W,   dW = gᵀ x,   db = sum_rows g
// Taken for float32/float64 operands of one dtype, and under k.autocast on a backend whose GEMM takes
// half operands (halfMatmul): x and W are rounded to the autocast dtype and the product accumulates in
// float32 onto a float32 bias, so y is float32 as the composite's bf16 product + float32 bias is,
// without the composite's intermediate bf16 rounding of x Wᵀ and its widening add. The roundings are
// not ops on the tape: dx and dW come out of the half GEMMs as float32 sums for float32 x and W, where
// the composite rounds them to bf16 and its casts' backward widens them again. The rest goes to
// the composite.
import { backendOf } from '../../backend/index.js';
import { autocastDtype } from '../../tensor/autocast.js';
import { shapeStr } from '../../tensor/layout.js';
import { tidy } from '../../tensor/scope.js';
import type { Tensor } from '../../tensor/tensor.js';
import { emptyLike, inputs, needsGrad, record, save } from '../dispatch.js';
import { gemmReadable, matmul, matmulInto } from '../matmul.js';
import { sum } from '../reduce.js';
import { to } from '../elementwise.js';
import { type DType, isFloat } from '../../tensor/dtype.js';
import { noGrad } from '../../tensor/grad_mode.js';
import { contiguous, expand, reshape, transpose } from '../view.js';
import { cachedWeight, weightCacheActive } from './weight_cache.js';

/** True when linear(x, weight, bias) takes the fused path (see the file comment). */
export function canFuseLinear(x: Tensor, weight: Tensor, bias: Tensor | null | undefined): bias is Tensor {
  if (!bias) return false;
  if (autocastDtype()) return backendOf(x).halfMatmul === true && isFloat(x.dtype) && isFloat(weight.dtype) && bias.dtype === 'float32';
  const dt = x.dtype;
  return (dt === 'float32' || dt === 'float64') && weight.dtype === dt && bias.dtype === dt;
}

/**
 * y = x Wᵀ + b as one GEMM accumulating onto the broadcast bias; weight [out, in], bias [out].
 * @example linearFused(x, layer.weight, layer.bias)  // [B, T, in] -> [B, T, out]
 */
export function linearFused(x: Tensor, weight: Tensor, bias: Tensor): Tensor {
  return tidy(() => {
    // inside the scope: the rounded x (and an uncached rounded W) die with it unless saved for backward
    const { xh, wh } = gemmOperands('linear', x, weight, bias);
    const { x2, y2 } = biasedProduct(xh, wh, bias);
    const [M, N] = y2.shape;
    const y = reshape(y2, [...x.shape.slice(0, -1), N]);
    if (!needsGrad(x, weight, bias)) return y;
    const [sx, sw] = [save(x2), save(wh)];
    return record('linear', y, [x, weight, bias], (g) => {
      const g2 = reshape(g, [M, N]);
      // under autocast the GEMMs take the gradient rounded to the half operands' dtype
      const gh = g2.dtype === sx.dtype ? g2 : to(g2, sx.dtype);
      return [...linearInputGrads(gh, sx, sw, x, weight), bias.requiresGrad ? sum(g2, 0) : null];
    }, [sx, sw]);
  });
}

/**
 * Checks a fused linear's operands (shapes, one backend) and returns the GEMM's: under autocast x and W
 * rounded to its dtype, made without a graph (the op records against x and W themselves and returns
 * their gradients in their own dtypes, so no cast op sits between them and the GEMM: see
 * linearInputGrads); otherwise x and W. A weight's rounding may be cached (weight_cache.ts): the
 * caller must not dispose it.
 */
export function gemmOperands(op: string, x: Tensor, weight: Tensor, bias: Tensor): { xh: Tensor; wh: Tensor } {
  inputs(op, x, weight, bias);
  if (weight.ndim !== 2 || x.shape[x.ndim - 1] !== weight.shape[1])
    throw new Error(`${op}: input ${shapeStr(x.shape)} does not match weight ${shapeStr(weight.shape)} ([out, in] with in = the input's last dim)`);
  const N = weight.shape[0];
  if (bias.ndim !== 1 || bias.shape[0] !== N)
    throw new Error(`${op}: bias ${shapeStr(bias.shape)} does not match weight ${shapeStr(weight.shape)} (out features ${N})`);
  const ac = autocastDtype();
  if (!ac) return { xh: x, wh: weight };
  const round = (t: Tensor): Tensor => (t.dtype === ac ? t : noGrad(() => to(t, ac)));
  if (weight.dtype === ac) return { xh: round(x), wh: weight };
  // A weight without gradient inside withWeightCache (inference) is rounded once per scope. Elsewhere a
  // float32 weight goes to the GEMM as it is where the GEMM rounds it while packing (halfMatmulFloatB):
  // no half copy of W is written per call or held from forward to backward (linearRecast does the same).
  const roundsW = weight.dtype === 'float32' && backendOf(x).halfMatmulFloatB === true && !(weightCacheActive() && !needsGrad(weight));
  return { xh: round(x), wh: roundsW ? weight : cachedWeight(weight, ac, () => to(weight, ac)) };
}

/**
 * x's [M, K] rows (a view when they are contiguous) and y2 [M, N] = x2 Wᵀ + b in the bias's dtype
 * (float32 under autocast: the half GEMM accumulates into it). No graph is recorded.
 */
export function biasedProduct(x: Tensor, weight: Tensor, bias: Tensor): { x2: Tensor; y2: Tensor } {
  const [N, K] = weight.shape;
  const flat = x.ndim === 2 ? x : reshape(x, [-1, K]);
  const x2 = gemmReadable(flat) ? flat : contiguous(flat);
  const M = x2.shape[0];
  const y2 = emptyLike(x2, [M, N], bias.dtype);
  const kernels = backendOf(x).kernels;
  if (process.env.KESTREL_BIAS_EPILOGUE !== '0' && kernels.matmulBias?.(x2, transpose(weight), bias, y2)) return { x2, y2 };
  kernels.copy(expand(bias, [M, N]), y2);
  matmulInto(x2, transpose(weight), y2);
  return { x2, y2 };
}

/**
 * dx = g W (in x's shape) and dW = gᵀ x2, each null when not needed; g2 [M, N] in the GEMM operands'
 * dtype (savedX2, savedW). Each is written by the GEMM in its input's own dtype: under autocast a
 * float32 x or W gets its gradient as the half GEMM's float32 sums, never rounded to half and widened
 * again (what a cast op's backward would do: a slower half-output GEMM, a rounding, and a pass).
 */
export function linearInputGrads(g2: Tensor, savedX2: Tensor, savedW: Tensor, x: Tensor, weight: Tensor): [Tensor | null, Tensor | null] {
  return [
    x.requiresGrad ? reshape(productAs(g2, savedW, x.dtype), x.shape) : null,
    weight.requiresGrad ? productAs(transpose(g2), savedX2, weight.dtype) : null,
  ];
}

/**
 * a [M, K] times b [K, N] written by the GEMM in `dtype`: for half operands and float32, the GEMM's
 * float32 sums themselves (matmul would round them to the operands' dtype). No graph is recorded.
 */
export function productAs(a: Tensor, b: Tensor, dtype: DType): Tensor {
  if (a.dtype === dtype && b.dtype === dtype) return matmul(a, b);
  const out = emptyLike(a, [a.shape[0], b.shape[1]], dtype);
  matmulInto(a, b, out, false);
  return out;
}
