// ZeRO stage 2 (Rajbhandari et al. 2020, "gradient partitioning"): stage 1's sharded optimizer
// state, and no rank keeps the whole gradient. Each parameter group is cut into buckets
// (bucket_plan.ts); rank r owns slice r of every bucket. As backward's grad-ready hooks fire on a
// step's last micro-batch, each gradient is copied into its bucket's place in the group's shared
// bucket region (bucket_region.ts) and freed; a full bucket is reduce-scattered straight into the
// owners' shard gradients on the transport's worker while backward goes on (reading the peers'
// buckets in place), and its place is free again once that call is done (startNow: at most one
// bucket in flight and one filling). The global norm and the overflow check are a sum of the
// ranks' shard norms (a non-finite shard makes every rank's sum non-finite, so all skip alike);
// after the update every rank rebuilds its parameters from all ranks' shards (shard_gather.ts:
// straight from the peers' shared shards, or by all-gathers of several buckets at a time).
//
// Accumulation: micro-steps before the last communicate nothing, so they add into each rank's
// local .grad as autograd always does (that local gradient is the price of silent micro-steps;
// DeepSpeed instead reduces every micro-step into the partition). With gradAccum 1 no rank ever
// holds more than its shard, the bucket in flight, the bucket filling and autograd's pending grads.
import { backendOf } from '../backend/index.js';
import { zeros } from '../ops/creation.js';
import { narrow, reshape } from '../ops/view.js';
import { gradSquaredNorm } from '../optim/clip.js';
import { noGrad } from '../tensor/grad_mode.js';
import { keep, tidy } from '../tensor/scope.js';
import { memory } from '../tensor/memory.js';
import type { Tensor } from '../tensor/tensor.js';
import type { ShardLayout } from '../train/data_parallel.js';
import { type PlannedBucket, piecesIn, planBuckets } from './bucket_plan.js';
import { DEFAULT_BUCKET_BYTES, DistributedDataParallel } from './ddp.js';
import type { ProcessGroup, Work } from './process_group.js';
import { BucketRegion } from './bucket_region.js';
import { flatten } from './flat.js';
import { ShardGatherer } from './shard_gather.js';

interface Bucket extends PlannedBucket {
  /** this rank's float32 shard of the group (the optimizer's parameter) */
  shard: Tensor;
  /** the bucket's full gradient while it fills and reduces */
  flat: Tensor | null;
  ready: number;
  work: Work | null;
  /** its place in the fill order over every group (which end of the bucket region it takes) */
  index: number;
}

interface Arena<O> {
  /** the group's parameters, in the group's order */
  params: Tensor[];
  shard: Tensor;
  buckets: Bucket[];
  options: O | undefined;
}

export class ZeroStage2<O = unknown> extends DistributedDataParallel {
  private readonly arenas: Arena<O>[];
  private readonly bucketOf = new Map<Tensor, { bucket: Bucket; index: number }>();
  private unhook: (() => void)[] = [];
  /** the bucket whose reduceScatter was started last (its buffer goes when the next one starts) */
  private last: Bucket | null = null;
  private readonly gatherer: ShardGatherer;
  /** 2: each gradient is freed once copied into its bucket; 1 (ZeroStage1): kept until backward ends */
  protected get stage(): 1 | 2 {
    return 2;
  }

  /** groups: the optimizer's parameter groups; every rank holds the same values (broadcast first) */
  constructor(group: ProcessGroup, groups: readonly { params: Tensor[]; options?: O }[], bucketBytes = DEFAULT_BUCKET_BYTES) {
    super(group, bucketBytes);
    this.gatherer = new ShardGatherer(group);
    const N = group.size;
    let filled = 0; // buckets of earlier groups (bucket indices run on across groups, as sizeFor pairs them)
    this.arenas = groups.filter((g) => g.params.length).map((g) => {
      if (g.params.some((p) => p.dtype !== 'float32')) throw new Error(`ZeRO stage ${this.stage}: trainable parameters must be float32 (master weights)`);
      const plan = planBuckets(g.params, N, Math.max(1, Math.floor(bucketBytes / 4)));
      // in shared memory, so that the all-gather after the update reads the peers' shards in place
      const shard = keep(group.shared(plan.shardLength, 'float32', 'param'));
      noGrad(() => tidy(() => {
        // bucket by bucket, so that only one bucket's full copy exists at a time
        for (const b of plan.buckets)
          tidy(() => backendOf(shard).kernels.copy(narrow(flatten(b.params, b.length), 0, group.rank * (b.length / N), b.length / N), narrow(shard, 0, b.shardOffset, b.length / N)));
      }));
      const buckets = plan.buckets.map((b) => ({ ...b, shard, flat: null, ready: 0, work: null, index: filled++ }));
      for (const b of buckets) b.params.forEach((p, index) => this.bucketOf.set(p, { bucket: b, index }));
      return { params: g.params, shard, buckets, options: g.options };
    });
    const lengths = this.arenas.flatMap((a) => a.buckets.map((b) => b.length));
    this.region = new BucketRegion(keep(group.shared(BucketRegion.sizeFor(lengths), 'float32', 'grad')));
  }

  /** The groups to build the optimizer over: one shard tensor per group, with the group's options. */
  get shardGroups(): { params: Tensor[]; options?: O }[] {
    return this.arenas.map((a) => ({ params: [a.shard], ...(a.options === undefined ? {} : { options: a.options }) }));
  }

  /** Elements of this rank's shards (1/N of the trainable parameters, plus each bucket's padding). */
  get shardNumel(): number {
    return this.arenas.reduce((n, a) => n + a.shard.numel, 0);
  }

  override arm(params: readonly Tensor[]): void {
    for (const a of this.arenas) {
      a.shard.grad?.dispose();
      // every element is written by its bucket's reduceScatter (padding included)
      a.shard.grad = memory.withTag('grad', () => keep(noGrad(() => zeros([a.shard.numel], { backend: a.shard.backendName }))));
      for (const b of a.buckets) b.ready = 0;
    }
    const stray = params.filter((p) => !this.bucketOf.has(p));
    if (stray.length) throw new Error(`ZeRO stage ${this.stage}: ${stray.length} trainable parameter(s) (first [${stray[0].shape.join(', ')}]) are in no parameter group given to ZeroStage${this.stage}`);
    this.unhook = params.map((p) => p.registerHook(() => this.gradReady(p)));
  }

  override async finish(params: readonly Tensor[]): Promise<void> {
    for (const off of this.unhook) off();
    this.unhook = [];
    // a parameter whose hook never fired (unused in this forward, or unarmed) still goes in, as
    // its accumulated .grad or zeros, so every rank reduces every bucket, in plan order
    for (const a of this.arenas) for (const b of a.buckets) for (const p of b.params) if (!b.work && !this.copied.has(p)) this.gradReady(p);
    const works = this.arenas.flatMap((a) => a.buckets.map((b) => b.work!));
    this.last = null;
    for (const w of works) await w;
    for (const a of this.arenas) for (const b of a.buckets) this.releaseFlat(b), (b.work = null);
    for (const p of params) p.zeroGrad();
  }

  /** sqrt of the sum over ranks of each shard's sum(g²) (padding is zero): the global norm. */
  override async gradNorm(): Promise<number> {
    const mine = this.arenas.reduce((s, a) => s + (a.shard.grad ? gradSquaredNorm(a.shard.grad) : 0), 0);
    const [all] = await this.sum([mine]);
    return Math.sqrt(all);
  }

  override scaleGrads(_params: readonly Tensor[], factor: number): void {
    super.scaleGrads(this.arenas.map((a) => a.shard), factor);
  }

  /** The shards' gradients were written by the reduceScatters: nothing to prepare. */
  override beforeOptimizerStep(): void {}

  /** Gathers every rank's updated slice of each bucket into the parameters (in chunks of several buckets: shard_gather.ts). */
  override async afterOptimizerStep(): Promise<void> {
    for (const a of this.arenas) await this.gatherer.gather(a.shard, a.buckets);
  }

  override shardLayout(): ShardLayout {
    const N = this.worldSize;
    return {
      stage: this.stage,
      params: this.arenas.flatMap((a) => a.params),
      groups: this.arenas.map((a) => ({
        shard: a.shard,
        pieces: a.buckets.flatMap((b) => piecesIn(b.params, this.rank * (b.length / N), b.length / N, b.shardOffset)),
      })),
    };
  }

  /** parameters of this step whose gradient is already in a bucket */
  private readonly copied = new Set<Tensor>();

  /** A final gradient: into its bucket's buffer (freed from .grad); a full bucket starts reducing. */
  private gradReady(p: Tensor): void {
    const { bucket: b, index } = this.bucketOf.get(p)!;
    if (this.copied.has(p)) return;
    b.flat ??= memory.withTag('grad', () => keep(noGrad(() => this.region!.acquire(b, b.index, b.length, b.params.reduce((n, q) => n + q.numel, 0), p.backendName))));
    noGrad(() => tidy(() => {
      const into = reshape(narrow(b.flat!, 0, b.offsets[index], p.numel), p.shape);
      if (p.grad) backendOf(p).kernels.copy(p.grad, into);
      else backendOf(p).kernels.fill(into, 0); // the region holds an earlier bucket's values
    }));
    if (p.grad && this.stage === 2) p.zeroGrad(); // the bucket holds it now
    this.copied.add(p);
    if (++b.ready === b.params.length) this.reduce(b);
  }

  /** Starts the bucket's reduceScatter into this rank's slice of the shard gradient, then frees the previous bucket's buffer. */
  private reduce(b: Bucket): void {
    const out = narrow(b.shard.grad!, 0, b.shardOffset, b.length / this.worldSize);
    b.work = this.group.reduceScatterNow(out, b.flat!, 'sum');
    out.dispose();
    for (const p of b.params) this.copied.delete(p);
    // reduceScatterNow returned after the previous call finished: its buffer is no longer read
    if (this.last && this.last !== b) this.releaseFlat(this.last);
    this.last = b;
  }

  private releaseFlat(b: Bucket): void {
    b.flat?.dispose();
    b.flat = null;
    this.region!.release(b);
  }
}
