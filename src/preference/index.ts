// Public surface of src/preference: the preference losses as functions of log-probs, TRL's
// metrics, preference data, and the Trainer steps of DPO/ORPO/SimPO/KTO and reward models.
export { DPO_LOSS_TYPES, type DpoLossType, type DpoOptions, type PairLogps, type PairLossOutput, dpoLoss } from './dpo_loss.js';
export { CPO_LOSS_TYPES, type CpoLossType, type CpoOptions, cpoLoss, cpoUsesAverageLogps } from './cpo_loss.js';
export { orpoLoss, orpoMetrics } from './orpo_loss.js';
export { KTO_LOSS_TYPES, type KtoLossType, type KtoOptions, ktoLoss, ktoMetrics } from './kto_loss.js';
export { pairwiseRewardLoss, rewardMetrics } from './reward_loss.js';
export { type PairMetrics, pairMetrics } from './metrics.js';
export { pairRecord, unpairedRecord, type PairRecord, type UnpairedRecord } from './records.js';
export { completionEncoder, type CompletionEncoderOptions } from './encode.js';
export { PairDataset, type PairBatch, type PairExample, type ReferenceLogps } from './pair_dataset.js';
export { loadPreferenceData, loadUnpairedData, type LoadPreferenceOptions, type LoadedPairs } from './load.js';
export { sequenceLogps, completionLengths, type SequenceLogps } from './logps.js';
export { computeReferenceLogps } from './reference.js';
export { type PairMethod, pairStep, pairLoss } from './pair_step.js';
export { rewardStep } from './reward_step.js';
