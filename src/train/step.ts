// One optimizer step's gradients over several micro-batches, normalised by the target tokens of
// the whole accumulated batch (not averaged per micro-batch), so N micro-batches of B rows give
// the gradient of one batch of N*B rows even when their token counts differ.
import type { Batch } from '../data/index.js';
import { tensor } from '../ops/creation.js';
import { div } from '../ops/elementwise.js';
import { item } from '../ops/transfer.js';
import { tidy } from '../tensor/scope.js';
import { autocast } from '../tensor/autocast.js';
import type { CausalLM, CausalLMInput } from '../models/causal_lm.js';
import type { Tensor } from '../tensor/tensor.js';
import { noGrad } from '../tensor/grad_mode.js';
import { isMeta } from '../tensor/meta.js';

export const IGNORE = -100;

/** Targets that take loss: labels[:, 1:] that are not -100 (the model shifts inside). */
export function targetTokens(batch: Pick<Batch, 'labels'>): number {
  let n = 0;
  for (const row of batch.labels) for (let t = 1; t < row.length; t++) if (row[t] !== IGNORE) n++;
  return n;
}

/** A batch's arrays as the model's int64 inputs (labels included). */
export function batchInputs(b: Batch, backend?: string): CausalLMInput {
  const ids = (rows: number[][]): Tensor => tensor(rows, { dtype: 'int64', backend });
  return {
    inputIds: ids(b.inputIds),
    labels: ids(b.labels),
    attentionMask: ids(b.attentionMask),
    positionIds: b.positionIds ? ids(b.positionIds) : null,
    documentIds: b.documentIds ? ids(b.documentIds) : null,
  };
}

export interface AccumulateOptions {
  backend?: string;
  autocast?: 'bfloat16' | 'float16' | null;
  lossScale?: number;
  /**
   * sees each micro-batch's summed loss after its forward, before its backward: a throw here
   * stops the step before any gradient exists (optimizer in backward checks for a NaN loss so)
   */
  beforeBackward?: (lossSum: number) => void;
  /**
   * target tokens to normalise by instead of these micro-batches' own: data-parallel ranks pass
   * the whole global batch's, so that summing their gradients gives the global batch's gradient
   */
  normalizeTokens?: number;
}

/** Where the model's parameters live (ZeRO-3's partitioned ones are meta stand-ins: skipped; none left: the default backend). */
const modelBackend = (model: CausalLM): string | undefined => model.parameters().find((p) => !isMeta(p))?.backendName;

/**
 * Runs forward and backward on every micro-batch, accumulating into .grad; returns the mean
 * loss per target token over all of them.
 * @example const { loss } = accumulateGradients(model, [b1, b2]); optimizer.step()
 */

export function accumulateGradients(
  model: CausalLM, micro: Batch[], opts: AccumulateOptions = {},
): { loss: number; tokens: number } {
  const { lossScale = 1 } = opts;
  // the inputs go where the model is (a model moved with .to('cuda') needs no default-backend change)
  const backend = opts.backend ?? modelBackend(model);
  const tokens = opts.normalizeTokens ?? micro.reduce((n, b) => n + targetTokens(b), 0);
  if (tokens === 0) throw new Error('accumulateGradients: the batch has no target tokens (every label is -100)');
  let total = 0;
  for (const b of micro) {
    total += autocast(opts.autocast ?? null, () => tidy(() => {
      const out = model.forward({ ...batchInputs(b, backend), lossReduction: 'sum', returnLogits: false });
      const lossSum = item(out.loss!);
      opts.beforeBackward?.(lossSum);
      // the fp16 loss scale multiplies here and is divided out of the gradients before the step
      div(out.loss!, tokens / lossScale).backward();
      return lossSum;
    }));
  }
  return { loss: total / tokens, tokens };
}

/** What one optimizer step's micro-batches gave: the step's loss, the input tokens seen, a method's own metrics. */
export interface StepResult {
  loss: number;
  /** input tokens processed (for tokens_per_sec) */
  tokens: number;
  /** logged beside loss under these names (TRL's: 'rewards/margins', 'logps/chosen', ...) */
  metrics?: Record<string, number>;
}

/**
 * How the Trainer turns micro-batches into gradients: the hook through which the preference and
 * RL methods (src/preference) reuse the loop, optimizers, checkpoints and metrics. accumulate runs
 * forward and backward on every micro-batch, normalised so the gradients are the whole step's.
 */
export interface TrainStep<B> {
  /**
   * asynchronous work before a step's gradients, outside autograd (RL: sampling the rollouts and
   * scoring them); returns the micro-batches accumulate then sees
   */
  prepare?(micro: B[]): Promise<B[]>;
  /**
   * the optimizer updates one step makes, each a list of micro-batches accumulated into one
   * update (default: one update of all the step's micro-batches). PPO returns its experience
   * buffer's minibatches for several epochs, so one rollout feeds several updates.
   */
  updates?(micro: B[]): B[][];
  accumulate(micro: B[], opts: AccumulateOptions): StepResult;
  /** the loss and metrics on held-out batches (no gradient) */
  evaluate(batches: Iterable<B>): { loss: number; metrics?: Record<string, number> };
  /** the tokens accumulate normalises by (data-parallel training needs it for the global batch) */
  targetTokens?(micro: B[]): number;
}

/**
 * The causal-LM step (SFT and pretraining): token-normalised cross-entropy.
 * @example new Trainer({ model, data, step: causalLMStep(model), ... }) // what the Trainer does by default
 */
export function causalLMStep(model: CausalLM): TrainStep<Batch> {
  return {
    accumulate: (micro, opts) => {
      const { loss } = accumulateGradients(model, micro, opts);
      return { loss, tokens: micro.reduce((n, b) => n + b.inputIds.length * (b.inputIds[0]?.length ?? 0), 0) };
    },
    evaluate: (batches) => {
      let sum = 0;
      let tokens = 0;
      const backend = modelBackend(model);
      for (const b of batches) {
        tokens += targetTokens(b);
        sum += noGrad(() => tidy(() => item(model.forward({ ...batchInputs(b, backend), lossReduction: 'sum', returnLogits: false }).loss!)));
      }
      return { loss: sum / Math.max(tokens, 1) };
    },
    targetTokens: (micro) => micro.reduce((n, b) => n + targetTokens(b), 0),
  };
}
