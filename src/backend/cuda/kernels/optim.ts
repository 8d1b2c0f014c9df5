import { pending } from './pending.js';

export const optimKernels = pending('adamw');
