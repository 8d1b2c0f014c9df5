// The numbers TRL logs for its preference trainers, under TRL's names (DPOTrainer, CPOTrainer,
// ORPOTrainer): batch means of the implicit rewards, their margin and accuracy, and the log-probs.
import { toFloat32Array, toTypedArray } from '../ops/transfer.js';
import type { Tensor } from '../tensor/tensor.js';

/** A 1-D tensor's values as doubles (float64 tensors exactly). */
export function values(t: Tensor): number[] {
  const raw = t.dtype === 'float64' ? toTypedArray(t) : toFloat32Array(t);
  return Array.from(raw as ArrayLike<number>);
}

export const meanOf = (xs: readonly number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

export type PairMetrics = {
  'rewards/chosen': number;
  'rewards/rejected': number;
  'rewards/margins': number;
  /** strict chosen > rejected: a tie counts 0 (TRL) */
  'rewards/accuracies': number;
  'logps/chosen': number;
  'logps/rejected': number;
};

/**
 * TRL's pairwise metrics from per-example rewards and log-probs ([B] each, no gradient needed).
 * @example pairMetrics({ chosenRewards, rejectedRewards, chosenLogps, rejectedLogps })['rewards/margins']
 */
export function pairMetrics(t: { chosenRewards: Tensor; rejectedRewards: Tensor; chosenLogps: Tensor; rejectedLogps: Tensor }): PairMetrics {
  const c = values(t.chosenRewards);
  const r = values(t.rejectedRewards);
  return {
    'rewards/chosen': meanOf(c),
    'rewards/rejected': meanOf(r),
    'rewards/margins': meanOf(c.map((x, i) => x - r[i])),
    'rewards/accuracies': meanOf(c.map((x, i) => (x > r[i] ? 1 : 0))),
    'logps/chosen': meanOf(values(t.chosenLogps)),
    'logps/rejected': meanOf(values(t.rejectedLogps)),
  };
}
