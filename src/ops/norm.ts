// RMSNorm and LayerNorm over the last dim: fused kernels (src/ops/fused/norm.ts) behind the
// public names; the composites define them.
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { add, mul, sub, unary } from './elementwise.js';
import { layerNormFused, rmsNormFused } from './fused/norm.js';
import { mean } from './reduce.js';

export interface RmsNormOpts {
  eps?: number;
  /** scale by (offset + weight): Gemma stores weight - 1 and uses offset 1 */
  offset?: number;
}

/** y = x / sqrt(mean(x^2) + eps) * (offset + weight) over the last dim (HF LlamaRMSNorm). */
export function rmsNormComposite(x: Tensor, weight: Tensor | null, opts: RmsNormOpts = {}): Tensor {
  const { eps = 1e-6, offset = 0 } = opts;
  return tidy(() => {
    const y = mul(x, unary('rsqrt', add(mean(mul(x, x), -1, true), eps)));
    return weight ? mul(y, offset ? add(weight, offset) : weight) : y;
  });
}

/** y = (x - mean) / sqrt(var + eps) * weight + bias over the last dim (biased variance). */
export function layerNormComposite(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps = 1e-5): Tensor {
  return tidy(() => {
    const c = sub(x, mean(x, -1, true));
    let y = mul(c, unary('rsqrt', add(mean(mul(c, c), -1, true), eps)));
    if (weight) y = mul(y, weight);
    return bias ? add(y, bias) : y;
  });
}

/** @example k.rmsNorm(x, w, { eps: 1e-5 }) */
export const rmsNorm = (x: Tensor, weight: Tensor | null, opts: RmsNormOpts = {}): Tensor =>
  rmsNormFused(x, weight, opts.eps ?? 1e-6, opts.offset ?? 0);
/** @example k.layerNorm(x, w, b, 1e-5) */
export const layerNorm = (x: Tensor, weight: Tensor | null, bias: Tensor | null, eps = 1e-5): Tensor =>
  layerNormFused(x, weight, bias, eps);
