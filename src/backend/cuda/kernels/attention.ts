import { pending } from './pending.js';

export const attentionKernels = pending('attention', 'attentionBackward');
