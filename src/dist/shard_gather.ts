// After a ZeRO stage 1 or 2 update across machines (or with shared memory off), every rank
// rebuilds its whole parameters from all ranks' updated shards (on one machine the parameters lie
// in the shards themselves: zero2.ts). The shard is cut into segments (one per reduce bucket) and
// rank r owns slice r of each. Stage 1 used to gather a whole arena at once into a fresh Ψ-element
// buffer (Ψ·4 more parameter memory, and first-touch page faults on it every step), stage 2 bucket
// by bucket into fresh buffers. Here the shard goes in chunks of at most GATHER_BYTES of gathered
// output, whatever the segments, through one buffer kept from step to step, and each chunk's pieces
// are copied out to their parameters while still in cache. Measured on 2 ranks (26 M parameters,
// load ~15): stage 1's gather 490-730 ms → 130-225 ms; stage 2's hidden²-element buckets 130-230 ms
// → 90-150 ms; 16 MiB chunks were 2× slower than 2-4 MiB (the copy-out then misses the cache).
import { backendOf } from '../backend/index.js';
import { zeros } from '../ops/creation.js';
import { narrow, reshape } from '../ops/view.js';
import { noGrad } from '../tensor/grad_mode.js';
import { keep, tidy } from '../tensor/scope.js';
import { memory } from '../tensor/memory.js';
import type { Tensor } from '../tensor/tensor.js';
import { piecesIn } from './bucket_plan.js';
import type { ProcessGroup } from './process_group.js';

/** The most bytes one all-gather writes: small enough that its output is still cached when copied out. */
export const GATHER_BYTES = 4 << 20;

/** Parameters laid end to end in a segment of `length` elements (a multiple of N) whose slice r·length/N.. is rank r's, at `shardOffset` of every rank's shard. */
export interface ShardSegment {
  params: readonly Tensor[];
  length: number;
  shardOffset: number;
}

/** What the gatherer needs of a group: its size and all-gathers. */
export type GatherGroup = Pick<ProcessGroup, 'size' | 'allGather'>;

/** Gathers shards into parameters (see the file comment); keeps its buffer between calls until dispose(). */
export class ShardGatherer {
  private buffer: Tensor | null = null;

  constructor(private readonly group: GatherGroup, private readonly gatherBytes = GATHER_BYTES) {}

  /**
   * Every rank calls it with its float32 shard and the same segments (in shard order).
   * @example await gatherer.gather(shard, plan.buckets) // every bucket's parameters hold all ranks' updated values
   */
  async gather(shard: Tensor, segments: readonly ShardSegment[]): Promise<void> {
    const N = this.group.size;
    const total = shard.numel;
    const chunk = Math.max(1, Math.min(total, Math.floor(this.gatherBytes / 4 / N)));
    if (!this.buffer || this.buffer.numel < chunk * N || this.buffer.backendName !== shard.backendName) {
      this.buffer?.dispose();
      this.buffer = memory.withTag('param', () => keep(zeros([chunk * N], { backend: shard.backendName })));
    }
    let s = 0; // the first segment that may overlap the chunk
    for (let lo = 0; lo < total; lo += chunk) {
      const n = Math.min(chunk, total - lo);
      const [out, mine] = tidy(() => [keep(narrow(this.buffer!, 0, 0, n * N)), keep(narrow(shard, 0, lo, n))]);
      try {
        await this.group.allGather(out, mine); // out[r·n + i] = rank r's shard[lo + i]
        while (s < segments.length && segments[s].shardOffset + segments[s].length / N <= lo) s++;
        noGrad(() => tidy(() => {
          for (let i = s; i < segments.length && segments[i].shardOffset < lo + n; i++) copyOut(out, segments[i], lo, n, N);
        }));
      } finally {
        out.dispose();
        mine.dispose();
      }
    }
  }

  dispose(): void {
    this.buffer?.dispose();
    this.buffer = null;
  }
}

/** Copies the part of `seg` that falls in shard range [lo, lo + n) out of every rank's block of `out` into the parameters. */
function copyOut(out: Tensor, seg: ShardSegment, lo: number, n: number, N: number): void {
  const slice = seg.length / N;
  const a = Math.max(lo, seg.shardOffset);
  const b = Math.min(lo + n, seg.shardOffset + slice);
  for (let r = 0; r < N; r++)
    for (const piece of piecesIn(seg.params, r * slice + (a - seg.shardOffset), b - a, r * n + (a - lo))) {
      const dst = narrow(reshape(piece.param, [-1]), 0, piece.start, piece.length);
      backendOf(piece.param).kernels.copy(narrow(out, 0, piece.at, piece.length), dst);
    }
}
