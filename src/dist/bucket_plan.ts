// The static bucket plan of ZeRO stage 2: a parameter group's tensors in backward order (the
// reverse of the module's, as torch's DDP assumes) cut into buckets of at most `bucketElements`,
// each padded to a multiple of the world size N. Rank r owns elements [r·L/N, (r+1)·L/N) of every
// bucket of length L (FSDP's per-unit sharding), so one bucket's gradient is one balanced
// reduceScatter and rank r's optimizer shard is its slices of every bucket, one after another.
import type { Tensor } from '../tensor/tensor.js';
import type { ShardPiece } from '../train/data_parallel.js';

export interface PlannedBucket {
  params: Tensor[];
  /** element offset of each parameter inside the bucket */
  offsets: number[];
  /** elements of the bucket, padded to a multiple of the world size */
  length: number;
  /** where this bucket's 1/N slice starts in every rank's shard */
  shardOffset: number;
}

export interface BucketPlan {
  buckets: PlannedBucket[];
  /** elements of one rank's shard: the sum of every bucket's length / N */
  shardLength: number;
}

/**
 * Buckets of whole parameters (a parameter larger than a bucket is a bucket of its own); with
 * `align`, each rank's slice of a bucket is a multiple of that many elements.
 * @example planBuckets([w1, w2, w3], 2, 1 << 20).buckets[0].params // [w3, w2, w1] when they fit one bucket
 */
export function planBuckets(params: readonly Tensor[], worldSize: number, bucketElements: number, align = 1): BucketPlan {
  if (!(bucketElements >= 1)) throw new Error(`ZeRO bucket plan: bucket size must be at least 1 element, got ${bucketElements}`);
  const buckets: PlannedBucket[] = [];
  let open: Tensor[] = [];
  let openNumel = 0;
  let shardOffset = 0;
  const close = (): void => {
    if (!open.length) return;
    const offsets: number[] = [];
    let at = 0;
    for (const p of open) (offsets.push(at), (at += p.numel));
    const length = Math.ceil(at / (worldSize * align)) * worldSize * align;
    buckets.push({ params: open, offsets, length, shardOffset });
    shardOffset += length / worldSize;
    open = [];
    openNumel = 0;
  };
  for (const p of [...params].reverse()) {
    if (openNumel && openNumel + p.numel > bucketElements) close();
    open.push(p);
    openNumel += p.numel;
  }
  close();
  return { buckets, shardLength: shardOffset };
}

/**
 * The pieces of parameters laid end to end (from element 0, in order) that fall in the range
 * [from, from + length) of that layout; `at` counts from `shardAt` (where the range sits in a shard).
 * @example piecesIn([w6, w3], 4, 4, 0) // [{ param: w6, start: 4, length: 2, at: 0 }, { param: w3, start: 0, length: 2, at: 2 }]
 */
export function piecesIn(params: readonly Tensor[], from: number, length: number, shardAt: number): ShardPiece[] {
  const pieces: ShardPiece[] = [];
  let offset = 0;
  for (const param of params) {
    const lo = Math.max(from, offset);
    const hi = Math.min(from + length, offset + param.numel);
    if (hi > lo) pieces.push({ param, start: lo - offset, length: hi - lo, at: shardAt + (lo - from) });
    offset += param.numel;
  }
  return pieces;
}
