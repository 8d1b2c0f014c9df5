import { pending } from './pending.js';

export const nnKernels = pending(
  'softmax', 'softmaxBackward', 'glu', 'gluBackward', 'rmsNorm', 'rmsNormBackward', 'layerNorm', 'layerNormBackward',
  'crossEntropy', 'crossEntropyBackward', 'rope',
);
