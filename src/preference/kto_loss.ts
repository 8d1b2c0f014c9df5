// KTO (Ethayarajh et al. 2024): unpaired desirable/undesirable completions, each scored against a
// batch-level KL estimate, as TRL 1.13's KTOTrainer (loss types kto and apo_zero_unpaired).
import { mul, sub, unary, where } from '../ops/elementwise.js';
import { tensor } from '../ops/creation.js';
import { mean } from '../ops/reduce.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { shapeStr } from '../tensor/layout.js';
import { meanOf, values } from './metrics.js';

export const KTO_LOSS_TYPES = ['kto', 'apo_zero_unpaired'] as const;
export type KtoLossType = (typeof KTO_LOSS_TYPES)[number];

export interface KtoInputs {
  /** [B] summed completion log-probs, policy and reference */
  policyLogps: Tensor;
  referenceLogps: Tensor;
  /** [B] true = desirable */
  label: readonly boolean[];
  /**
   * the KL estimate's log-probs [B'] (completions paired with other rows' prompts); no gradient
   * flows through the estimate (TRL computes it under no_grad and detaches it)
   */
  policyKLLogps?: Tensor | null;
  referenceKLLogps?: Tensor | null;
}

export interface KtoOptions {
  lossType?: KtoLossType;
  beta?: number;
  desirableWeight?: number;
  undesirableWeight?: number;
}

export interface KtoOutput {
  loss: Tensor;
  /** [B] weighted per-example losses in batch order */
  perExample: Tensor;
  /** [B] beta * (policy - reference), no gradient */
  rewards: Tensor;
  /** the clamped KL estimate (0 for apo_zero_unpaired) */
  kl: number;
}

/**
 * kl = max(0, mean(policyKL - referenceKL)); r = policy - reference; desirable rows
 * w_d (1 - sigmoid(beta (r - kl))), undesirable w_u (1 - sigmoid(beta (kl - r))); the loss is the
 * mean over all rows. apo_zero_unpaired: w_d (1 - sigmoid(beta r)) and w_u sigmoid(beta r), no KL.
 * @example const { loss, kl } = ktoLoss({ policyLogps, referenceLogps, label, policyKLLogps, referenceKLLogps })
 */
export function ktoLoss(inp: KtoInputs, opts: KtoOptions = {}): KtoOutput {
  const { lossType = 'kto', beta = 0.1, desirableWeight = 1, undesirableWeight = 1 } = opts;
  if (!KTO_LOSS_TYPES.includes(lossType)) throw new Error(`ktoLoss: unknown loss type '${lossType}' (one of ${KTO_LOSS_TYPES.join(', ')})`);
  const B = inp.policyLogps.shape[0];
  if (inp.policyLogps.ndim !== 1 || inp.referenceLogps.ndim !== 1 || inp.referenceLogps.shape[0] !== B || inp.label.length !== B)
    throw new Error(`ktoLoss: policyLogps ${shapeStr(inp.policyLogps.shape)}, referenceLogps ${shapeStr(inp.referenceLogps.shape)} and ${inp.label.length} labels must agree ([B])`);
  const needKl = lossType === 'kto';
  if (needKl && (!inp.policyKLLogps || !inp.referenceKLLogps)) throw new Error("ktoLoss: loss type 'kto' needs policyKLLogps and referenceKLLogps (the KL estimate)");
  const kl = needKl ? Math.max(0, noGrad(() => tidy(() => meanOf(values(sub(inp.policyKLLogps!, inp.referenceKLLogps!)))))) : 0;
  return tidy(() => {
    const r = sub(inp.policyLogps, inp.referenceLogps);
    const desirable = tensor(inp.label.map((l) => (l ? 1 : 0)), { dtype: 'bool', backend: r.backendName });
    const sig = (x: Tensor): Tensor => unary('sigmoid', mul(x, beta));
    const good = lossType === 'kto' ? sub(1, sig(sub(r, kl))) : sub(1, sig(r));
    const bad = lossType === 'kto' ? sub(1, sig(sub(kl, r))) : sig(r);
    const perExample = where(desirable, mul(good, desirableWeight), mul(bad, undesirableWeight));
    return { loss: mean(perExample), perExample, rewards: noGrad(() => mul(r, beta)), kl };
  });
}

/**
 * TRL's KTO metrics: the KL estimate, rewards and log-probs averaged over desirable (chosen) and
 * undesirable (rejected) rows; a side with no rows in the batch is left out (not NaN).
 */
export function ktoMetrics(out: KtoOutput, policyLogps: Tensor, label: readonly boolean[]): Record<string, number> {
  const rw = values(out.rewards);
  const lp = values(policyLogps);
  const pick = (xs: number[], want: boolean): number[] => xs.filter((_, i) => label[i] === want);
  const m: Record<string, number> = { kl: out.kl };
  const [good, bad] = [label.some((l) => l), label.some((l) => !l)];
  if (good) Object.assign(m, { 'rewards/chosen': meanOf(pick(rw, true)), 'logps/chosen': meanOf(pick(lp, true)) });
  if (bad) Object.assign(m, { 'rewards/rejected': meanOf(pick(rw, false)), 'logps/rejected': meanOf(pick(lp, false)) });
  if (good && bad) m['rewards/margins'] = m['rewards/chosen'] - m['rewards/rejected'];
  return m;
}
