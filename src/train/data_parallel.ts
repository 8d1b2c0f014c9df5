// What data-parallel training plugs into the Trainer (src/dist/ddp.ts implements it over a
// ProcessGroup; train/ knows no transport). Each rank runs its own micro-batches of the global
// batch; the gradients of the step's last backward are summed over ranks as they complete, so
// after finish() every rank holds the gradient of the whole global batch.
import type { Tensor } from '../tensor/tensor.js';

/** Elements [start, start + length) of a parameter (flattened) sit at [at, at + length) of a shard. */
export interface ShardPiece {
  param: Tensor;
  start: number;
  length: number;
  at: number;
}

/** Where ZeRO keeps each optimizer shard (one per parameter group, the optimizer's parameters) in the model's parameters. */
export interface ShardLayout {
  stage: number;
  /** the trainable parameters in the order of the groups the shards were built from (a plain checkpoint's optimizer order) */
  params: Tensor[];
  groups: { shard: Tensor; pieces: ShardPiece[] }[];
}

export interface DataParallel {
  readonly rank: number;
  readonly worldSize: number;
  /**
   * arms the gradient hooks for one backward (the step's last micro-batch): reductions start as
   * gradients become final. That backward must be the next outermost one: the parameters it does
   * not reach count as unused this step (zeros). Arming again drops the earlier arming.
   */
  arm(params: readonly Tensor[]): void;
  /** resolves once every parameter's .grad holds the sum over ranks; disarms the hooks */
  finish(params: readonly Tensor[]): Promise<void>;
  /** sums numbers over ranks (a step's loss and token counts) */
  sum(values: number[]): Promise<number[]>;
  /** the global gradient norm (NaN/inf on every rank when any rank's gradient is not finite, so all skip alike) */
  gradNorm(params: readonly Tensor[]): Promise<number>;
  /** gradients (wherever this strategy keeps them) *= factor: unscaling and clipping */
  scaleGrads(params: readonly Tensor[], factor: number): void;
  /** after clipping, before optimizer.step(): ZeRO hands each rank's optimizer its share of the gradient */
  beforeOptimizerStep(): void;
  /** after optimizer.step(): ZeRO gathers the updated shards into every rank's parameters */
  afterOptimizerStep(): Promise<void>;
  /** why a checkpoint cannot be written now, or null */
  checkpointBlocker(): string | null;
  /** ZeRO >= 1: this rank's optimizer shards and what they hold (a sharded checkpoint); null when the optimizer holds whole parameters */
  shardLayout(): ShardLayout | null;
}
