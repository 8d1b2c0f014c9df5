import { pending } from './pending.js';

export const indexingKernels = pending('gather', 'scatterAdd', 'indexSelect', 'indexAdd');
