// Optimizers, schedules, clipping and loss scaling.
export { Optimizer, type ParamGroup } from './optimizer.js';
export { AdamW, type AdamWOptions } from './adamw.js';
export { SGD, Lion, type SgdOptions, type LionOptions } from './sgd.js';
export * as schedules from './schedules.js';
export { clipGradNorm, gradNorm, gradSquaredNorm, gradSum, scaleGrads, squaredNormConsuming } from './clip.js';
export { OptimizerInBackward, type InBackwardResult } from './in_backward.js';
export { LossScaler, type LossScalerOptions } from './loss_scaler.js';
