// PPO's pieces for RLHF (Schulman et al. 2017; Ouyang et al. 2022), as TRL's PPOTrainer and
// DeepSpeed-Chat's step 3 compute them: the per-token KL-penalised reward, the clipped policy
// surrogate and the clipped value loss over masked [N, T] tokens, with their clip fractions.
import { compare, maximum, minimum, mul, neg, sub, to, unary } from '../ops/elementwise.js';
import { sum } from '../ops/reduce.js';
import { item } from '../ops/transfer.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';

/** sum(x * mask) / sum(mask) */
function maskedMean(x: Tensor, mask: Tensor): Tensor {
  return mul(sum(mul(x, mask)), 1 / Math.max(noGrad(() => item(sum(mask))), 1));
}

/** The share of masked tokens where `flag` holds (a clip fraction). */
const fraction = (flag: Tensor, mask: Tensor): number => noGrad(() => tidy(() => item(maskedMean(to(flag, mask.dtype), mask))));

/**
 * Per-token rewards of one completion: -klCoef (logp - ref) at every token, plus the reward
 * model's score on the last one (TRL's PPOTrainer; DeepSpeed-Chat's compute_rewards, unclipped).
 * @example klPenalizedRewards([-1, -2], [-1.5, -2], 0.8, 0.1) // [-0.05, 0.8]
 */
export function klPenalizedRewards(logps: readonly number[], refLogps: readonly number[], score: number, klCoef: number): number[] {
  if (logps.length !== refLogps.length || logps.length === 0) throw new Error(`klPenalizedRewards: ${logps.length} policy and ${refLogps.length} reference log-probs (one per completion token, at least one)`);
  const r = logps.map((lp, t) => -klCoef * (lp - refLogps[t]));
  r[r.length - 1] += score;
  return r;
}

/**
 * The clipped surrogate: mean over tokens of max(-A ratio, -A clip(ratio, 1 - eps, 1 + eps)),
 * ratio = exp(logp - old); clipfrac = share of tokens where the clipped term is the larger.
 * @example const { loss, clipfrac } = ppoPolicyLoss({ logps, oldLogps, advantages, mask }, { clipRange: 0.2 })
 */
export function ppoPolicyLoss(inp: { logps: Tensor; oldLogps: Tensor; advantages: Tensor; mask: Tensor }, opts: { clipRange?: number } = {}): { loss: Tensor; clipfrac: number; approxKl: number } {
  const eps = opts.clipRange ?? 0.2;
  return tidy(() => {
    const logRatio = sub(inp.logps, inp.oldLogps);
    const ratio = unary('exp', logRatio);
    const unclipped = mul(neg(inp.advantages), ratio);
    const clipped = mul(neg(inp.advantages), unary('clamp', ratio, 1 - eps, 1 + eps));
    const loss = maskedMean(maximum(unclipped, clipped), inp.mask);
    // TRL's approxkl: 0.5 * mean((logp - old)^2)
    const approxKl = noGrad(() => item(maskedMean(mul(mul(logRatio, logRatio), 0.5), inp.mask)));
    return { loss, clipfrac: fraction(compare('gt', clipped, unclipped), inp.mask), approxKl };
  });
}

/**
 * The clipped value loss: 0.5 * mean over tokens of max((v - R)^2, (clip(v, old - c, old + c) - R)^2),
 * with v the new value prediction, old the rollout's and R the returns; clipfrac as in the policy loss.
 * @example const { loss } = ppoValueLoss({ values, oldValues, returns, mask }, { clipRange: 0.2 })
 */
export function ppoValueLoss(inp: { values: Tensor; oldValues: Tensor; returns: Tensor; mask: Tensor }, opts: { clipRange?: number } = {}): { loss: Tensor; clipfrac: number } {
  const c = opts.clipRange ?? 0.2;
  return tidy(() => {
    const vClipped = minimum(maximum(inp.values, sub(inp.oldValues, c)), sub(inp.oldValues, -c));
    const d1 = sub(inp.values, inp.returns);
    const d2 = sub(vClipped, inp.returns);
    const [l1, l2] = [mul(d1, d1), mul(d2, d2)];
    return { loss: mul(maskedMean(maximum(l1, l2), inp.mask), 0.5), clipfrac: fraction(compare('gt', l2, l1), inp.mask) };
  });
}
