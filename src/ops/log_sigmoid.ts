// logSigmoid (PyTorch's F.logsigmoid), a composite: the preference losses (DPO, KTO, ORPO, the
// Bradley-Terry reward loss) are logsigmoid of margins that can be huge of either sign.
import type { Tensor } from '../tensor/tensor.js';
import { tidy } from '../tensor/scope.js';
import { add, mul, sub, unary } from './elementwise.js';

/**
 * log(sigmoid(x)) = min(x, 0) - log(1 + exp(-|x|)), finite for every finite x (log(sigmoid(x))
 * would be log(0) = -inf below about -745 in float64). min(x, 0) is written (x - |x|) / 2 so that
 * its gradient at the tie x = 0 is 1/2, which with the second term's 0 there gives
 * d/dx logsigmoid(0) = sigmoid(-0) = 1/2 exactly.
 * @example k.logSigmoid(k.tensor([-1000, 0, 3])) // [-1000, -0.6931..., -0.0485...]
 */
export function logSigmoid(x: Tensor): Tensor {
  return tidy(() => {
    const ax = unary('abs', x);
    const minPart = mul(sub(x, ax), 0.5);
    return sub(minPart, unary('log', add(unary('exp', unary('neg', ax)), 1)));
  });
}
