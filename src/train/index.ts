// Training: the gradient-accumulation step (the Trainer builds on it).
export { accumulateGradients, targetTokens } from './step.js';
