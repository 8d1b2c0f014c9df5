// Reference-free pairwise losses: CPO (Xu et al. 2024) and SimPO (Meng et al. 2024), as TRL 1.13's
// experimental CPOTrainer computes them. SimPO and CPO-ipo use average (length-normalised)
// log-probs; CPO adds cpo_alpha times the NLL of the chosen completions.
import { add, mul, neg, sub, unary } from '../ops/elementwise.js';
import { logSigmoid } from '../ops/log_sigmoid.js';
import { mean } from '../ops/reduce.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import type { PairLossOutput } from './dpo_loss.js';

export const CPO_LOSS_TYPES = ['sigmoid', 'hinge', 'ipo', 'simpo'] as const;
export type CpoLossType = (typeof CPO_LOSS_TYPES)[number];

export interface CpoOptions {
  /** default 'sigmoid' (CPO); 'simpo' is SimPO */
  lossType?: CpoLossType;
  /** default 0.1 (TRL's CPOConfig; SimPO's paper uses 2.0-2.5) */
  beta?: number;
  /** SimPO's target margin gamma (default 0.5) */
  simpoGamma?: number;
  /** weight of the chosen NLL (CPO 1.0; SimPO 0) */
  cpoAlpha?: number;
  labelSmoothing?: number;
}

/** True for the types that compare average rather than summed log-probs (TRL's `loss_type in ["ipo", "simpo"]`). */
export const cpoUsesAverageLogps = (t: CpoLossType): boolean => t === 'ipo' || t === 'simpo';

export interface CpoInputs {
  /** [B]: summed log-probs, or average log-probs for the types cpoUsesAverageLogps names */
  chosenLogps: Tensor;
  rejectedLogps: Tensor;
  /** mean NLL of the chosen completions (a scalar), added times cpoAlpha; omit when cpoAlpha is 0 */
  nll?: Tensor | null;
}

/**
 * The CPO/SimPO loss: z = chosen - rejected; sigmoid -(1-ls) logsig(b z) - ls logsig(-b z);
 * hinge relu(1 - b z); ipo (z - 1/(2b))^2; simpo the sigmoid form of z - gamma/b. Rewards are
 * beta times the log-probs given. loss = mean + cpoAlpha * nll.
 * @example const { loss } = cpoLoss({ chosenLogps: avgC, rejectedLogps: avgR }, { lossType: 'simpo', beta: 2, simpoGamma: 0.5, cpoAlpha: 0 })
 */
export function cpoLoss(inp: CpoInputs, opts: CpoOptions = {}): PairLossOutput {
  const { lossType = 'sigmoid', beta = 0.1, simpoGamma = 0.5, cpoAlpha = 1, labelSmoothing = 0 } = opts;
  if (!CPO_LOSS_TYPES.includes(lossType)) throw new Error(`cpoLoss: unknown loss type '${lossType}' (one of ${CPO_LOSS_TYPES.join(', ')})`);
  if (!(beta > 0)) throw new Error(`cpoLoss: beta must be > 0, got ${beta}`);
  if (!(labelSmoothing >= 0 && labelSmoothing < 0.5)) throw new Error(`cpoLoss: labelSmoothing must be in [0, 0.5), got ${labelSmoothing}`);
  if (cpoAlpha !== 0 && !inp.nll) throw new Error(`cpoLoss: cpoAlpha is ${cpoAlpha}, so the chosen completions' NLL must be passed (nll)`);
  return tidy(() => {
    let z = sub(inp.chosenLogps, inp.rejectedLogps);
    if (lossType === 'simpo') z = sub(z, simpoGamma / beta);
    const bz = mul(z, beta);
    const perExample = lossType === 'hinge' ? unary('relu', sub(1, bz))
      : lossType === 'ipo' ? mul(sub(z, 1 / (2 * beta)), sub(z, 1 / (2 * beta)))
      : sub(mul(logSigmoid(bz), -(1 - labelSmoothing)), mul(logSigmoid(neg(bz)), labelSmoothing));
    const pref = mean(perExample);
    const loss = cpoAlpha !== 0 ? add(pref, mul(inp.nll!, cpoAlpha)) : pref;
    const [chosenRewards, rejectedRewards] = noGrad(() => [mul(inp.chosenLogps, beta), mul(inp.rejectedLogps, beta)]);
    return { loss, perExample, chosenRewards, rejectedRewards };
  });
}
