// The Trainer step of a reward model (TRL's RewardTrainer, DeepSpeed-Chat step 2): the
// sequence-classification model scores the batch's chosen and rejected rows in one forward; the
// Bradley-Terry loss pushes chosen above rejected; pairwise accuracy is the metric.
import { type DecoderForSequenceClassification, pooledPositions } from '../models/seq_cls.js';
import { tensor } from '../ops/creation.js';
import { narrow, select } from '../ops/view.js';
import type { TrainStep } from '../train/step.js';
import type { PairBatch } from './pair_dataset.js';
import { pairwiseRewardLoss, rewardMetrics } from './reward_loss.js';
import { weightedStep } from './weighted_step.js';

/**
 * The score is read before a row's first pad id (transformers 4.44): when the pad id also occurs
 * inside a sequence (a tokenizer whose pad is its eos, with a chat template that ends every turn
 * with it) the reward would be read in the middle. That is an error here, not a silent misread.
 */
function checkPooling(b: PairBatch, padTokenId: number | null): void {
  const at = pooledPositions(b.rows.inputIds, padTokenId);
  b.rows.attentionMask.forEach((mask, r) => {
    const last = mask.lastIndexOf(1);
    if (at[r] !== last)
      throw new Error(`reward model: pad_token_id ${padTokenId} occurs inside a sequence (row ${r} would be scored at token ${at[r]}, not at its last token ${last}); transformers reads the score before the first pad id, so use a tokenizer/config whose pad token never appears in the text (not its eos when the chat template ends turns with it)`);
  });
}

/**
 * @example new Trainer({ model: rm, data: pairs, step: rewardStep(rm), batchSize: 8, maxSteps: 200 })
 */
export function rewardStep(model: DecoderForSequenceClassification, opts: { margin?: number } = {}): TrainStep<PairBatch> {
  return weightedStep((b: PairBatch) => {
    checkPooling(b, model.config.padTokenId);
    const B = b.pairs;
    const backend = model.parameters()[0]?.backendName;
    const ids = (r: number[][]) => tensor(r, { dtype: 'int64', backend });
    const scores = select(model.forward({ inputIds: ids(b.rows.inputIds), attentionMask: ids(b.rows.attentionMask) }).logits, 1, 0); // [2B]
    const [chosen, rejected] = [narrow(scores, 0, 0, B), narrow(scores, 0, B, B)];
    const margin = opts.margin ? tensor(new Array<number>(B).fill(opts.margin), { backend }) : null;
    return { loss: pairwiseRewardLoss(chosen, rejected, margin), metrics: rewardMetrics(chosen, rejected), weight: B, tokens: 2 * B * (b.rows.inputIds[0]?.length ?? 0) };
  }, (b) => b.pairs);
}
