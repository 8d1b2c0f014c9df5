// The Bradley-Terry pairwise loss of a reward model (Ouyang et al. 2022; TRL's RewardTrainer,
// DeepSpeed-Chat step 2): -logsigmoid(r_chosen - r_rejected - margin), averaged over pairs.
import { neg, sub } from '../ops/elementwise.js';
import { logSigmoid } from '../ops/log_sigmoid.js';
import { mean } from '../ops/reduce.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { shapeStr } from '../tensor/layout.js';
import { meanOf, values } from './metrics.js';

/**
 * Mean of -logsigmoid(chosen - rejected - margin) over pairs; chosen/rejected are the rewards
 * [B] (logits[:, 0] of the reward model), margin an optional [B] tensor (TRL's `margin` column).
 * @example const loss = pairwiseRewardLoss(rm.forward(c).logits.select(1, 0), rm.forward(r).logits.select(1, 0))
 */
export function pairwiseRewardLoss(chosen: Tensor, rejected: Tensor, margin?: Tensor | null): Tensor {
  if (chosen.ndim !== 1 || rejected.ndim !== 1 || chosen.shape[0] !== rejected.shape[0] || (margin && (margin.ndim !== 1 || margin.shape[0] !== chosen.shape[0])))
    throw new Error(`pairwiseRewardLoss: chosen ${shapeStr(chosen.shape)}, rejected ${shapeStr(rejected.shape)}${margin ? ` and margin ${shapeStr(margin.shape)}` : ''} must all be [B]`);
  return tidy(() => {
    const d = sub(chosen, rejected);
    return mean(neg(logSigmoid(margin ? sub(d, margin) : d)));
  });
}

/** Pairwise accuracy (chosen scored strictly above rejected) and the mean reward margin. */
export function rewardMetrics(chosen: Tensor, rejected: Tensor): { accuracy: number; 'rewards/chosen': number; 'rewards/rejected': number; 'rewards/margins': number } {
  const c = values(chosen);
  const r = values(rejected);
  return {
    accuracy: meanOf(c.map((x, i) => (x > r[i] ? 1 : 0))),
    'rewards/chosen': meanOf(c), 'rewards/rejected': meanOf(r), 'rewards/margins': meanOf(c.map((x, i) => x - r[i])),
  };
}
