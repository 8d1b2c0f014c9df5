// Completion log-probs of a policy: one forward over the concatenated chosen and rejected rows,
// log_softmax(logits[t - 1])[ids[t]] summed over the completion tokens (labels != -100), as TRL's
// concatenated_forward. Cross-entropy with reduction 'none' is that per-token -log-prob (fused).
import type { Batch } from '../data/packing.js';
import type { LanguageModel } from '../models/causal_lm.js';
import { mul, neg, unary } from '../ops/elementwise.js';
import { logSoftmax } from '../ops/softmax.js';
import { noGrad } from '../tensor/grad_mode.js';
import { crossEntropy } from '../ops/loss.js';
import { sum } from '../ops/reduce.js';
import { contiguous, narrow } from '../ops/view.js';
import { tensor } from '../ops/creation.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';

export interface SequenceLogps {
  /** [R, T - 1]: log p(ids[t + 1] | ids[..t]) on completion tokens, 0 elsewhere */
  tokenLogps: Tensor;
  /** [R]: summed over each row's completion */
  logps: Tensor;
  /** completion tokens per row */
  lengths: number[];
  /** [R, T - 1] the entropy of each position's next-token distribution (no gradient), when asked for */
  tokenEntropy: Tensor | null;
}

/** Completion tokens per row: labels[:, 1:] that are not -100 (what the shifted loss scores). */
export function completionLengths(rows: Pick<Batch, 'labels'>): number[] {
  return rows.labels.map((r) => r.reduce((n, l, t) => n + (t > 0 && l !== -100 ? 1 : 0), 0));
}

/**
 * The rows' completion log-probs in one forward.
 * @example const { logps } = sequenceLogps(model, batch.rows); // [2B]: chosen then rejected
 */
export function sequenceLogps(model: LanguageModel, rows: Batch, opts: { backend?: string; entropy?: boolean } = {}): SequenceLogps {
  const backend = opts.backend;
  const at = backend ?? model.parameters()[0]?.backendName;
  const ids = (r: number[][]): Tensor => tensor(r, { dtype: 'int64', backend: at });
  return tidy(() => {
    const inputIds = ids(rows.inputIds);
    const T = inputIds.shape[1];
    // left-padded rows (RL rollouts) carry their positions; right-padded ones count from 0
    const { logits } = model.forward({ inputIds, attentionMask: ids(rows.attentionMask), positionIds: rows.positionIds ? ids(rows.positionIds) : null });
    const labels = ids(rows.labels);
    const nll = crossEntropy(contiguous(narrow(logits!, 1, 0, T - 1)), contiguous(narrow(labels, 1, 1, T - 1)), { reduction: 'none' }); // [R, T - 1], 0 where ignored
    const tokenLogps = neg(nll);
    // H = -sum_v p_v log p_v (GRPO logs its completion mean as TRL's `entropy`)
    const tokenEntropy = opts.entropy ? noGrad(() => {
      const lsm = logSoftmax(narrow(logits!, 1, 0, T - 1), -1);
      return neg(sum(mul(unary('exp', lsm), lsm), -1));
    }) : null;
    return { tokenLogps, logps: sum(tokenLogps, 1), lengths: completionLengths(rows), tokenEntropy };
  });
}
