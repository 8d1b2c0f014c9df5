// The accumulate/evaluate loop every pairwise method shares: each micro-batch's loss is a mean
// over its B pairs, so it is weighted by B / (pairs in the step) before backward; the gradients
// then equal those of one batch of all the step's pairs, and the metrics are pair-weighted means.
import type { AccumulateOptions, StepResult, TrainStep } from '../train/step.js';
import { mul } from '../ops/elementwise.js';
import { item } from '../ops/transfer.js';
import { autocast } from '../tensor/autocast.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';

/** One micro-batch's mean loss (with its graph), metrics, weight (pairs or examples) and input tokens. */
export interface MicroLoss {
  loss: Tensor;
  metrics: Record<string, number>;
  weight: number;
  tokens: number;
}

/** Pair-weighted means of metric dictionaries; a metric a micro-batch lacks (KTO's rewards/chosen without a desirable row) is averaged over those that have it. */
class MetricMeans {
  private sums = new Map<string, { sum: number; weight: number }>();
  add(m: Record<string, number>, w: number): void {
    for (const [k, v] of Object.entries(m)) {
      const s = this.sums.get(k) ?? { sum: 0, weight: 0 };
      this.sums.set(k, { sum: s.sum + v * w, weight: s.weight + w });
    }
  }
  means(): Record<string, number> {
    return Object.fromEntries([...this.sums].map(([k, s]) => [k, s.sum / s.weight]));
  }
}

/**
 * A TrainStep from a per-micro-batch loss: weights, backward, loss scale and metrics handled here.
 * @example weightedStep((b) => ({ loss, metrics, weight: b.pairs, tokens }), (b) => b.pairs)
 */
export function weightedStep<B>(lossOf: (b: B) => MicroLoss, weightOf: (b: B) => number): TrainStep<B> {
  return {
    accumulate(micro: B[], opts: AccumulateOptions): StepResult {
      const total = micro.reduce((n, b) => n + weightOf(b), 0);
      const means = new MetricMeans();
      let loss = 0;
      let tokens = 0;
      for (const b of micro) {
        autocast(opts.autocast ?? null, () => tidy(() => {
          const r = lossOf(b);
          const value = item(r.loss);
          opts.beforeBackward?.(value);
          mul(r.loss, (r.weight / total) * (opts.lossScale ?? 1)).backward();
          loss += (value * r.weight) / total;
          tokens += r.tokens;
          means.add(r.metrics, r.weight);
        }));
      }
      return { loss, tokens, metrics: means.means() };
    },
    evaluate(batches: Iterable<B>) {
      const means = new MetricMeans();
      for (const b of batches) noGrad(() => tidy(() => {
        const r = lossOf(b);
        means.add({ loss: item(r.loss), ...r.metrics }, r.weight);
      }));
      const { loss, ...metrics } = means.means();
      return { loss, metrics };
    },
  };
}
