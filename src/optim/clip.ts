// Gradient clipping by global norm (torch.nn.utils.clip_grad_norm_): all gradients are scaled
// by max_norm / (total_norm + 1e-6) when the total L2 norm exceeds max_norm.
import { backendOf, withLayout } from '../backend/index.js';
import { full } from '../ops/creation.js';
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
 * sum(g²) of one gradient, in float32 on its device: the term gradNorm sums, exposed so that a
 * caller seeing gradients one at a time (optimizer in backward) gets the same global norm.
 * @example Math.sqrt(params.reduce((s, p) => s + gradSquaredNorm(p.grad!), 0)) === gradNorm(params)
 */
export function gradSquaredNorm(grad: Tensor): number {
  return noGrad(() => tidy(() => { const g = to(grad, 'float32'); return item(sum(mul(g, g))); }));
}

/**
 * gradSquaredNorm's value (the same kernels on the same float32 values) for a gradient its caller frees
 * next: a float32 gradient that owns its buffer is squared in place, so no gradient-sized temporary is allocated (on a
 * tied 49k-vocabulary embedding that temporary is 108 MB the allocator would keep).
 * @example const sq = squaredNormConsuming(p.grad!); p.zeroGrad()
 */
export function squaredNormConsuming(grad: Tensor): number {
  // a view, a shared buffer (a retained graph's saved gradient) or another dtype: the ordinary way
  if (grad.dtype !== 'float32' || !ownsStorage(grad)) return gradSquaredNorm(grad);
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
