import { pending } from './pending.js';

export const quantKernels = pending('quantLinear', 'quantLinearBackward');
