// The contract between a ProcessGroup and what moves its bytes. A transport runs one call at a
// time, in the order it is given (every member issues the same calls in the same order, like
// NCCL's stream), on contiguous buffers it receives as tensors. Two implement it: shared memory
// between the processes of one machine (shm_transport.ts) and MPI across machines
// (mpi_transport.ts: MPI's non-blocking collectives, subgroups by MPI_Comm_create_group).
import type { DType } from '../tensor/dtype.js';
import type { MemoryTag } from '../tensor/memory.js';
import type { Tensor } from '../tensor/tensor.js';

export const COLLECTIVES = ['allReduce', 'broadcast', 'allGather', 'reduceScatter', 'allToAll', 'send', 'recv', 'barrier'] as const;
export type Collective = (typeof COLLECTIVES)[number];

export const REDUCE_OPS = ['sum', 'avg', 'max', 'min'] as const;
export type ReduceOp = (typeof REDUCE_OPS)[number];

/** dtypes the transports carry, in native/dist_shm.h DistDType order */
export const DIST_DTYPES: readonly DType[] = ['float32', 'bfloat16', 'float16', 'int32', 'int64', 'float64', 'uint8'];

/**
 * One call. `count` is the element count per rank: allReduce/broadcast/send/recv move `count`;
 * allGather takes `count` and writes size × count; reduceScatter takes size × count and writes
 * `count`; allToAll takes and writes size × count (block r goes to rank r).
 */
export interface TransportCall {
  op: Collective;
  reduce: ReduceOp;
  dtype: DType;
  /** group-local rank: broadcast's root, send's destination, recv's source */
  peer: number;
  count: number;
  src: Tensor | null;
  dst: Tensor | null;
  timeoutMs: number;
}

export interface Transport {
  /** this process's rank within the group, and the group's global ranks (index = local rank) */
  readonly rank: number;
  readonly ranks: readonly number[];
  /** runs a call after every earlier one; rejects with a message naming the rank at fault */
  run(call: TransportCall): Promise<void>;
  /**
   * Runs a call now, blocking the JS thread until it is done (collectives inside a synchronous
   * forward or backward); throws when an asynchronous call of this group is still in flight.
   * Absent where the transport cannot block.
   */
  runSync?(call: TransportCall): void;
  /**
   * Optional: blocks until the calls already started are done, then starts this one before
   * returning (see ShmTransport.startNow); a transport without it gets run() from callers.
   */
  startNow?(call: TransportCall): Promise<void>;
  /** Optional, beside startNow: blocks until the calls already started are done (their buffers released). */
  waitNow?(): void;
  /**
   * Optional: a zeroed flat tensor that every member's process maps (all members call it together,
   * in the same order and with the same size, while no call is in flight). Collectives whose
   * buffers all lie in such tensors read the peers' in place instead of copying through the
   * transport's buffers. A transport without it gets ordinary tensors from ProcessGroup.shared.
   */
  share?(dtype: DType, numel: number, tag: MemoryTag, timeoutMs: number): Tensor;
  /**
   * Optional, beside share: rank `rank`'s copy of a tensor from share() (the same elements of
   * that rank's part), or null when `t` is not one. The caller synchronizes its reads (barriers).
   */
  peer?(t: Tensor, rank: number): Tensor | null;
  /**
   * Optional, beside share: every member's part of the region that t (a whole part from share())
   * begins, end to end, as one tensor readable here (null when t is not from share()).
   */
  whole?(t: Tensor): Tensor | null;
  /** Optional, beside share: how many collectives so far read the peers' shared buffers in place. */
  inPlaceCalls?(): number;
  /**
   * Optional: JS begins (1) or ends (-1) awaiting a call, so a rank waiting for its peers may keep
   * its core longer before it sleeps (nothing on this rank computes meanwhile).
   */
  awaiting?(delta: 1 | -1): void;
  /** Optional: whether the members read each other's private buffers directly (null: not known before the first collective). */
  crossMemory?(): boolean | null;
  /** Optional: how many collectives so far read some peer's private buffer directly (cross-memory attach) instead of through the slots. */
  crossMemoryCalls?(): number;
  /** elements of one piece of a call (calls larger than this are split); for tests of the boundaries */
  pieceElements(op: Collective, dtype: DType): number;
  /**
   * The transport of a subgroup: called by its members, in the same order on all of them.
   * `settled` runs once every member has called it (the parent group's barrier).
   */
  subgroup(index: number, ranks: readonly number[]): { transport: Transport; settled: () => void };
  close(): void;
}
