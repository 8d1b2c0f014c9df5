// Training: the Trainer loop, its checkpoints, and the gradient-accumulation step it runs.
export { accumulateGradients, targetTokens } from './step.js';
export { Trainer, type TrainerOptions, type StepMetrics } from './trainer.js';
export { saveCheckpoint, loadCheckpoint, listCheckpoints, type TrainerState } from './checkpoint.js';
export { decayParamGroups } from './param_groups.js';
export { wordErrorRate, charErrorRate, editDistance, normalizeTranscript } from './asr_metrics.js';
