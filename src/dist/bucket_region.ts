// Where gradient buckets fill and reduce (ZeRO stages 1-2, ZeRO-3's units): one region of the
// group's shared memory (ProcessGroup.shared, so the bucket's collective reads the peers' buckets
// in place) holding two consecutive buckets at once, the even-numbered one at its start and the odd
// one at its end, so it needs the largest sum of two neighbours' lengths. At most one bucket is in
// flight while the next fills (the *Now calls wait for the previous call), so two places suffice; a
// bucket whose place is still taken, or would overlap the other end's (hooks firing out of plan
// order, a buffer held longer than its neighbour: ZeRO-3 across micro-steps), gets a fresh buffer
// and takes the transport's path for private buffers (cross-memory attach, or the slots; fits()
// says beforehand, so a caller may first wait for its calls).
import { backendOf } from '../backend/index.js';
import { zeros } from '../ops/creation.js';
import { narrow } from '../ops/view.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';

export class BucketRegion {
  /** who holds each end, and how many elements */
  private readonly taken: [{ owner: object; length: number } | null, { owner: object; length: number } | null] = [null, null];

  /** region: a flat float32 tensor from ProcessGroup.shared (or any tensor, where none is shared) */
  constructor(private readonly region: Tensor) {}

  /** the region's elements */
  get numel(): number {
    return this.region.numel;
  }

  /** Elements a region needs for buckets of these lengths, filled in this order. */
  static sizeFor(lengths: readonly number[]): number {
    return Math.max(1, lengths.reduce((m, n, i) => Math.max(m, n + (lengths[i + 1] ?? 0)), 0));
  }

  /**
   * A buffer of `length` elements for `owner`, the index-th bucket; its elements from `used` on
   * (padding) are zero, the rest are the caller's to write.
   * @example const flat = region.acquire(bucket, 3, 1024, 1022, 'cpu') // at the region's end
   */
  acquire(owner: object, index: number, length: number, used: number, backend: string): Tensor {
    const end = index % 2;
    if (!this.fits(index, length)) return zeros([length], { backend });
    this.taken[end] = { owner, length };
    const flat = narrow(this.region, 0, end ? this.region.numel - length : 0, length);
    if (used < length) noGrad(() => tidy(() => backendOf(flat).kernels.fill(narrow(flat, 0, used, length - used), 0)));
    return flat;
  }

  /** Whether the index-th bucket of `length` elements would get its place now (free, and clear of the other end's). */
  fits(index: number, length: number): boolean {
    const end = index % 2;
    return this.taken[end] === null && length + (this.taken[1 - end]?.length ?? 0) <= this.region.numel;
  }

  /** The owner's buffer is no longer read: its place is free. */
  release(owner: object): void {
    for (const end of [0, 1]) if (this.taken[end]?.owner === owner) this.taken[end] = null;
  }

  /** Lets the region go (views still held keep its storage until they are disposed). */
  dispose(): void {
    this.region.dispose();
  }
}
