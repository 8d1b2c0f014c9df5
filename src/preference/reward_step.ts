// The Trainer step of a reward model (TRL's RewardTrainer, DeepSpeed-Chat step 2): the
// sequence-classification model scores the batch's chosen and rejected rows in one forward; the
// Bradley-Terry loss pushes chosen above rejected; pairwise accuracy is the metric.
import type { DecoderForSequenceClassification } from '../models/seq_cls.js';
import { tensor } from '../ops/creation.js';
import { narrow, select } from '../ops/view.js';
import type { TrainStep } from '../train/step.js';
import type { PairBatch } from './pair_dataset.js';
import { pairwiseRewardLoss, rewardMetrics } from './reward_loss.js';
import { weightedStep } from './weighted_step.js';

/**
 * @example new Trainer({ model: rm, data: pairs, step: rewardStep(rm), batchSize: 8, maxSteps: 200 })
 */
export function rewardStep(model: DecoderForSequenceClassification, opts: { margin?: number } = {}): TrainStep<PairBatch> {
  return weightedStep((b: PairBatch) => {
    const B = b.pairs;
    const backend = model.parameters()[0]?.backendName;
    const ids = (r: number[][]) => tensor(r, { dtype: 'int64', backend });
    const scores = select(model.forward({ inputIds: ids(b.rows.inputIds), attentionMask: ids(b.rows.attentionMask) }).logits, 1, 0); // [2B]
    const [chosen, rejected] = [narrow(scores, 0, 0, B), narrow(scores, 0, B, B)];
    const margin = opts.margin ? tensor(new Array<number>(B).fill(opts.margin), { backend }) : null;
    return { loss: pairwiseRewardLoss(chosen, rejected, margin), metrics: rewardMetrics(chosen, rejected), weight: B, tokens: 2 * B * (b.rows.inputIds[0]?.length ?? 0) };
  }, (b) => b.pairs);
}
