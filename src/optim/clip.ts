// Gradient clipping by global norm (torch.nn.utils.clip_grad_norm_): all gradients are scaled
// by max_norm / (total_norm + 1e-6) when the total L2 norm exceeds max_norm.
import { backendOf, withLayout } from '../backend/index.js';
import { full } from '../ops/creation.js';
import { contiguous } from '../ops/view.js';
import { mul, to } from '../ops/elementwise.js';
import { sum } from '../ops/reduce.js';
import { item } from '../ops/transfer.js';
import { ownsStorage } from '../ops/dispatch.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';

/** The global L2 norm of the gradients (NaN or Infinity when any gradient is not finite). */
export function gradNorm(params: Tensor[]): number {
  return Math.sqrt(params.reduce((s, p) => (p.grad ? s + gradSquaredNorm(p.grad) : s), 0));
}

/**
 * sum(g²) of one gradient on its device: the term gradNorm sums, exposed so that a caller seeing
 * gradients one at a time (optimizer in backward) gets the same global norm. Where the backend has
 * the sumSquares kernel (cpu, ref) it is one read of the float32 gradient, summed in float64, with
 * no squared temporary (on a tied 49k-vocabulary embedding that temporary would be 108 MB); else
 * sum(g * g) in float32. Not finite exactly when an element of g is not (float64 cannot overflow here).
 * @example Math.sqrt(params.reduce((s, p) => s + gradSquaredNorm(p.grad!), 0)) === gradNorm(params)
 */
export function gradSquaredNorm(grad: Tensor): number {
  return noGrad(() => tidy(() => {
    const g = contiguous(to(grad, 'float32'));
    const kernels = backendOf(g).kernels;
    if (!kernels.sumSquares) return item(sum(mul(g, g)));
    const out = full([], 0, { dtype: 'float64', backend: g.backendName });
    kernels.sumSquares(g, out);
    return item(out);
  }));
}

/**
 * gradSquaredNorm's value for a gradient its caller frees next: where the backend lacks
 * sumSquares, a float32 gradient that owns its buffer is squared in place instead of into a
 * gradient-sized temporary.
 * @example const sq = squaredNormConsuming(p.grad!); p.zeroGrad()
 */
export function squaredNormConsuming(grad: Tensor): number {
  // sumSquares reads without a temporary; a view, a shared buffer (a retained graph's saved gradient) or another dtype: the ordinary way
  if (backendOf(grad).kernels.sumSquares || grad.dtype !== 'float32' || !ownsStorage(grad)) return gradSquaredNorm(grad);
  return noGrad(() => tidy(() => {
    backendOf(grad).kernels.binary('mul', grad, grad, grad); // elementwise in place is safe: same index in and out
    return item(sum(grad));
  }));
}

/** sum(g) in float32: not finite exactly when an element is not, or the sum passes float32's range. */
export function gradSum(grad: Tensor): number {
  return noGrad(() => tidy(() => item(sum(to(grad, 'float32')))));
}

/** Clips in place; returns the norm before clipping. */
export function clipGradNorm(params: Tensor[], maxNorm: number): number {
  const total = gradNorm(params);
  const scale = maxNorm / (total + 1e-6);
  if (scale < 1) scaleGrads(params, scale);
  return total;
}

/** grad *= factor for every parameter with a gradient, in place. */
export function scaleGrads(params: Tensor[], factor: number): void {
  for (const p of params) {
    if (!p.grad) continue;
    const g = p.grad;
    const f = full([], factor, { dtype: g.dtype, backend: g.backendName });
    backendOf(g).kernels.binary('mul', g, withLayout(f, f.layout.expand(g.shape)), g);
    f.dispose();
  }
}
