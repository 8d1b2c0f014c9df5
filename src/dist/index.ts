// src/dist: process groups and their transports (communication: env, rendezvous, transport,
// queued_transport, shm_transport, mpi_transport + mpi_library, process_group, init), the launchers
// (launch: local; mpirun + hostfile: through MPI; elastic), and the strategies built on them (ddp, zero1, zero2).
export { type RankEnv, type RankSource, rankFromEnv } from './env.js';
export { DEFAULT_TIMEOUT_MS, DIST_BACKENDS, type DistBackend, type InitOpts, distBackend, initProcessGroup } from './init.js';
export { MpiTransport } from './mpi_transport.js';
export { type MpiImplementation, detectMpi, mpiLibrary } from './mpi_library.js';
export { ProcessGroup, type ProcessGroupOpts, Work } from './process_group.js';
export { COLLECTIVES, type Collective, DIST_DTYPES, REDUCE_OPS, type ReduceOp, type Transport, type TransportCall } from './transport.js';
export { DEFAULT_BUCKET_BYTES, DistributedDataParallel } from './ddp.js';
export { ZeroStage1 } from './zero1.js';
export { ZeroStage2 } from './zero2.js';
export { type BucketPlan, type PlannedBucket, planBuckets } from './bucket_plan.js';
export { type LaunchOpts, type LaunchResult, type RankFailure, failureMessage, launch } from './launch.js';
export { type Host, parseHostfile, readHostfile } from './hostfile.js';
export { type MpirunOpts, launchMpi, mpirunArgv } from './mpirun.js';
export { type ElasticOpts, launchElastic } from './elastic.js';
