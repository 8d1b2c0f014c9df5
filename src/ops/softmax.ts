// softmax / logSoftmax: public entry points run the fused kernel (src/ops/fused/softmax.ts);
// the composites below define what it must equal.
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { div, sub, unary } from './elementwise.js';
import { softmaxFused } from './fused/softmax.js';
import { logsumexp, max, sum } from './reduce.js';
import { noGrad } from '../tensor/grad_mode.js';

/** softmax(x) = exp(x - max) / sum(exp(x - max)) along dim. */
export function softmaxComposite(x: Tensor, dim = -1): Tensor {
  return tidy(() => {
    const e = unary('exp', sub(x, noGrad(() => max(x, dim, true))));
    return div(e, sum(e, dim, true));
  });
}

/** logSoftmax(x) = x - logsumexp(x) along dim. */
export const logSoftmaxComposite = (x: Tensor, dim = -1): Tensor => tidy(() => sub(x, logsumexp(x, dim, true)));

/** @example k.softmax(scores, -1) */
export const softmax = (x: Tensor, dim = -1): Tensor => softmaxFused(x, dim, false);
/** @example k.logSoftmax(logits, -1) */
export const logSoftmax = (x: Tensor, dim = -1): Tensor => softmaxFused(x, dim, true);
