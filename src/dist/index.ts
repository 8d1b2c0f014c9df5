// src/dist: process groups and their transports (communication), kept apart from the training
// strategies that use them.
export { type RankEnv, type RankSource, rankFromEnv } from './env.js';
export { DEFAULT_TIMEOUT_MS, type InitOpts, initProcessGroup } from './init.js';
export { ProcessGroup, type ProcessGroupOpts, Work } from './process_group.js';
export { COLLECTIVES, type Collective, DIST_DTYPES, REDUCE_OPS, type ReduceOp, type Transport, type TransportCall } from './transport.js';
