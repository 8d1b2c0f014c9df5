// Activations that are composites of primitives (no kernel of their own).
import type { Tensor } from '../tensor/tensor.js';
import { tidy } from '../tensor/scope.js';
import { add, mul, sub, unary } from './elementwise.js';

/**
 * torch.nn.functional.elu: x for x > 0, alpha (exp(x) - 1) otherwise. Written as
 * relu(x) + alpha (exp(-relu(-x)) - 1): the exp only ever sees x <= 0, so it never overflows.
 * @example elu(x)  // EnCodec's SEANet activation
 */
export function elu(x: Tensor, alpha = 1): Tensor {
  return tidy(() => {
    const negPart = sub(unary('exp', unary('neg', unary('relu', unary('neg', x)))), 1);
    return add(unary('relu', x), alpha === 1 ? negPart : mul(negPart, alpha));
  });
}
