// GRPO's clipped surrogate with a KL penalty to the reference, per token, and its four
// normalisations (TRL 1.13 GRPOTrainer._compute_loss): grpo (per-sequence token means), bnpo
// (batch token mean), dr_grpo (sum / (N * max length), Liu et al. 2025), dapo (sum / tokens of the
// generation batch, Yu et al. 2025; TRL's default). Pinned by ../shared/fixtures/preference/grpo.json.
import { add, compare, logicalAnd, logicalOr, minimum, mul, neg, sub, to, unary } from '../ops/elementwise.js';
import { max, min, sum } from '../ops/reduce.js';
import { unsqueeze } from '../ops/view.js';
import { item } from '../ops/transfer.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { shapeStr } from '../tensor/layout.js';

export const GRPO_LOSS_TYPES = ['grpo', 'bnpo', 'dr_grpo', 'dapo'] as const;
export type GrpoLossType = (typeof GRPO_LOSS_TYPES)[number];

export interface GrpoInputs {
  /** [N, T] the policy's completion token log-probs (with gradient) */
  logps: Tensor;
  /** [N, T] at sampling time; default logps detached (one update per generation: ratio 1) */
  oldLogps?: Tensor | null;
  /** [N, T] the reference's; needed when beta > 0 */
  refLogps?: Tensor | null;
  /** [N] one per completion */
  advantages: Tensor;
  /** [N, T] 1 on completion tokens, 0 on padding (float) */
  mask: Tensor;
}

export interface GrpoOptions {
  lossType?: GrpoLossType;
  /** KL coefficient (TRL default 0.0; the fixtures use 0.04) */
  beta?: number;
  /** clip range: [1 - epsilonLow, 1 + epsilonHigh] (default 0.2 each) */
  epsilonLow?: number;
  epsilonHigh?: number;
  /** dr_grpo's constant length (default T) */
  maxCompletionLength?: number;
  /** dapo's normaliser: completion tokens of the whole generation batch (default: this batch's) */
  numItemsInBatch?: number;
}

export interface GrpoOutput {
  loss: Tensor;
  /** [N, T]: -min(ratio A, clip(ratio) A) + beta kl, padding included (masked out of the loss) */
  perTokenLoss: Tensor;
  /** [N, T]: (exp(ref - logp) - (ref - logp) - 1) * ratio, or null when beta is 0 */
  perTokenKl: Tensor | null;
  /** [N, T] exp(logp - old) */
  ratio: Tensor;
  /** TRL's names: kl, clip_ratio/low_mean, low_min, high_mean, high_max, region_mean */
  metrics: Record<string, number>;
}

/** Per-sequence masked means of a boolean [N, T] (as float) and their masked batch mean. */
function clipStats(flag: Tensor, mask: Tensor): { batch: number; perSeq: Tensor } {
  const f = mul(to(flag, mask.dtype), mask);
  const perSeq = mul(sum(f, 1), unary('reciprocal', unary('clamp', sum(mask, 1), 1, Infinity)));
  return { batch: item(sum(f)) / Math.max(item(sum(mask)), 1), perSeq };
}

/**
 * The GRPO loss of N completions.
 * @example const { loss, metrics } = grpoLoss({ logps, oldLogps, refLogps, advantages, mask }, { beta: 0.04 })
 */
export function grpoLoss(inp: GrpoInputs, opts: GrpoOptions = {}): GrpoOutput {
  const { lossType = 'dapo', beta = 0, epsilonLow = 0.2, epsilonHigh = epsilonLow } = opts;
  if (!GRPO_LOSS_TYPES.includes(lossType)) throw new Error(`grpoLoss: unknown loss type '${lossType}' (one of ${GRPO_LOSS_TYPES.join(', ')})`);
  const { logps, mask } = inp;
  const [N, T] = logps.shape;
  if (logps.ndim !== 2 || mask.ndim !== 2 || mask.shape[0] !== N || mask.shape[1] !== T || inp.advantages.ndim !== 1 || inp.advantages.shape[0] !== N)
    throw new Error(`grpoLoss: logps ${shapeStr(logps.shape)}, mask ${shapeStr(mask.shape)} and advantages ${shapeStr(inp.advantages.shape)} must be [N, T], [N, T] and [N]`);
  if (beta !== 0 && !inp.refLogps) throw new Error(`grpoLoss: beta ${beta} needs the reference's token log-probs (refLogps)`);
  return tidy(() => {
    const old = inp.oldLogps ?? noGrad(() => mul(logps, 1));
    const ratio = unary('exp', sub(logps, old));
    const clipped = unary('clamp', ratio, 1 - epsilonLow, 1 + epsilonHigh);
    const A = unsqueeze(inp.advantages, 1);
    let perTokenLoss = neg(minimum(mul(ratio, A), mul(clipped, A)));
    let perTokenKl: Tensor | null = null;
    if (beta !== 0) {
      const d = sub(inp.refLogps!, logps);
      perTokenKl = mul(sub(sub(unary('exp', d), d), 1), ratio); // TRL's use_bias_correction_kl: times the ratio
      perTokenLoss = add(perTokenLoss, mul(perTokenKl, beta));
    }
    const masked = mul(perTokenLoss, mask);
    const tokens = noGrad(() => item(sum(mask)));
    const loss = lossType === 'grpo' ? mul(sum(mul(sum(masked, 1), unary('reciprocal', unary('clamp', sum(mask, 1), 1, Infinity)))), 1 / N)
      : lossType === 'bnpo' ? mul(sum(masked), 1 / Math.max(tokens, 1))
      : lossType === 'dr_grpo' ? mul(sum(masked), 1 / (N * (opts.maxCompletionLength ?? T)))
      : mul(sum(masked), 1 / (opts.numItemsInBatch ?? Math.max(tokens, 1)));
    const metrics = noGrad(() => {
      const low = logicalAnd(compare('lt', ratio, 1 - epsilonLow), compare('lt', A, 0));
      const high = logicalAnd(compare('gt', ratio, 1 + epsilonHigh), compare('gt', A, 0));
      const [l, h, r] = [clipStats(low, mask), clipStats(high, mask), clipStats(logicalOr(low, high), mask)];
      const m: Record<string, number> = {
        'clip_ratio/low_mean': l.batch, 'clip_ratio/low_min': item(min(l.perSeq)),
        'clip_ratio/high_mean': h.batch, 'clip_ratio/high_max': item(max(h.perSeq)), 'clip_ratio/region_mean': r.batch,
      };
      if (perTokenKl) m.kl = item(sum(mul(perTokenKl, mask))) / Math.max(tokens, 1);
      return m;
    });
    return { loss, perTokenLoss, perTokenKl, ratio, metrics };
  });
}
