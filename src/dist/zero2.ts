// ZeRO stage 2 (Rajbhandari et al. 2020, "gradient partitioning"): stage 1's sharded optimizer
// state, and no rank keeps the whole gradient. Each parameter group is cut into buckets
// (bucket_plan.ts); rank r owns slice r of every bucket. As backward's grad-ready hooks fire on a
// step's last micro-batch, each gradient is copied into its bucket's place in the group's shared
// bucket region (bucket_region.ts) and freed; a full bucket is reduce-scattered straight into the
// owners' shard gradients on the transport's worker while backward goes on (reading the peers'
// buckets in place), and its place is free again once that call is done (startNow: at most one
// bucket in flight and one filling). Buckets start in plan order, as stage 0's do (ddp.ts), and a
// weight this rank's backward does not reach goes in as zeros as backward starts. Where that is not
// known then (a weight unused inside a checkpointed region) its bucket waits until finish(), the
// complete buckets after it wait too, and those that fill meanwhile take buffers of their own
// (bucket_region.ts). The global norm and the overflow check are a sum of the ranks' shard norms (a
// non-finite shard makes every rank's sum non-finite, so all skip alike).
// Across machines (or with shared memory off) every rank rebuilds its parameters after the update
// from all ranks' shards by all-gathers of several buckets at a time (shard_gather.ts).
//
// On one machine (shared memory on) nothing is rebuilt: each bucket's shards are the parts of one
// shared region, whose parts lie end to end (each rank's slice a whole number of 64-byte lines), so
// the region read whole (ProcessGroup.whole) is the bucket's parameters end to end, and the
// parameters are pointed into it (Tensor.setData, as FSDP points its parameters into a flat
// buffer). Each bucket's shard is then an optimizer parameter of its own; an update writes this
// rank's slice of every parameter in place, and the peers read it there after the ranks meet. The
// ranks meet before the update (no rank writes a slice a peer's backward may still read) and
// after it (no rank reads a slice before its owner has written it). A parameter's bytes then lie
// in its owners' memory: this rank counts its shards as parameter memory, not the peers' parts.
// A resume writes the parameters (the model file) and the shards (the masters) on every rank while
// a peer may already run its forward: harmless, as every rank writes the same values.
//
// Accumulation: micro-steps before the last communicate nothing, so they add into each rank's
// local .grad as autograd always does (that local gradient is the price of silent micro-steps;
// DeepSpeed instead reduces every micro-step into the partition). With gradAccum 1 no rank ever
// holds more than its shard, the bucket in flight, the bucket filling and autograd's pending grads
// (but for the buckets held back by a weight unused inside a checkpointed region, above).
import { backendOf } from '../backend/index.js';
import { empty } from '../ops/dispatch.js';
import { narrow, reshape } from '../ops/view.js';
import { gradSquaredNorm } from '../optim/clip.js';
import { noGrad } from '../tensor/grad_mode.js';
import { keep, tidy } from '../tensor/scope.js';
import { memory } from '../tensor/memory.js';
import type { Tensor } from '../tensor/tensor.js';
import type { ShardLayout } from '../train/data_parallel.js';
import { type PlannedBucket, piecesIn, planBuckets } from './bucket_plan.js';
import { DEFAULT_BUCKET_BYTES, DistributedDataParallel, finalTwice } from './ddp.js';
import type { ProcessGroup, Work } from './process_group.js';
import { BucketRegion } from './bucket_region.js';
import { flatten } from './flat.js';
import { ShardGatherer } from './shard_gather.js';

interface Bucket extends PlannedBucket {
  /** the optimizer parameter (a shard) holding this rank's float32 slice of the bucket, and where in it: in place the bucket's own shared part, else the group's shard at shardOffset */
  owner: Tensor;
  ownerAt: number;
  /** the bucket's full gradient while it fills and reduces */
  flat: Tensor | null;
  ready: number;
  work: Work | null;
  /** its place in the fill order over every group (which end of the bucket region it takes) */
  index: number;
  /** its parameters known unused this step (by index): written (zeros or their accumulated gradient) just before it reduces, so that no bucket takes its buffer before its first gradient comes */
  unused: number[];
}

interface Arena<O> {
  /** the group's parameters, in the group's order */
  params: Tensor[];
  /** the optimizer's parameters for the group: its one shard, or (in place) each bucket's */
  shards: Tensor[];
  buckets: Bucket[];
  options: O | undefined;
}

export interface ZeroStage2Options {
  /** false: rebuild the parameters by all-gathers even where the peers' shards can be read in place (default true) */
  inPlace?: boolean;
}

/** 64-byte lines of float32: a rank's slice of a bucket in place, so that the parts of its region lie end to end */
const LINE_ELEMENTS = 16;

export class ZeroStage2<O = unknown> extends DistributedDataParallel {
  private readonly arenas: Arena<O>[];
  private readonly bucketOf = new Map<Tensor, { bucket: Bucket; index: number }>();
  /** the bucket whose reduceScatter was started last (its buffer goes when the next one starts) */
  private last: Bucket | null = null;
  /** every group's buckets in the order they start (their index), and the next to start */
  private readonly order: Bucket[];
  private nextToReduce = 0;
  private readonly gatherer: ShardGatherer;
  /** the parameters live in the shared regions of their buckets (one machine, shared memory on) */
  readonly inPlace: boolean;
  /** where the buckets fill and reduce, two at a time */
  private readonly region: BucketRegion;
  /** in place: the barriers started (at construction, before the update), awaited after the update or backward (where a failed call surfaces) */
  private meetings: Work[] = [];
  /** 2: each gradient is freed once copied into its bucket; 1 (ZeroStage1): kept until backward ends */
  protected get stage(): 1 | 2 {
    return 2;
  }

  /** groups: the optimizer's parameter groups; every rank holds the same values (broadcast first) */
  constructor(group: ProcessGroup, groups: readonly { params: Tensor[]; options?: O }[], bucketBytes = DEFAULT_BUCKET_BYTES, o: ZeroStage2Options = {}) {
    super(group, bucketBytes);
    this.gatherer = new ShardGatherer(group);
    this.inPlace = group.size > 1 && group.sharesMemory && group.startsNow && o.inPlace !== false;
    const N = group.size;
    let filled = 0; // buckets of earlier groups (bucket indices run on across groups, as sizeFor pairs them)
    this.arenas = groups.filter((g) => g.params.length).map((g) => {
      if (g.params.some((p) => p.dtype !== 'float32')) throw new Error(`ZeRO stage ${this.stage}: trainable parameters must be float32 (master weights)`);
      const plan = planBuckets(g.params, N, Math.max(1, Math.floor(bucketBytes / 4)), this.inPlace ? LINE_ELEMENTS : 1);
      // this rank's slice of a bucket of its (current, every rank's) parameters
      const sliceInto = (b: PlannedBucket, dst: Tensor): void => noGrad(() => tidy(() => {
        backendOf(dst).kernels.copy(narrow(flatten(b.params, b.length), 0, group.rank * (b.length / N), b.length / N), dst);
      }));
      if (this.inPlace) {
        const buckets = plan.buckets.map((b) => {
          const shard = keep(group.shared(b.length / N, 'float32', 'param'));
          sliceInto(b, shard);
          return { ...b, owner: shard, ownerAt: 0, flat: null, ready: 0, work: null, index: filled++, unused: [] };
        });
        return { params: g.params, shards: buckets.map((b) => b.owner), buckets, options: g.options };
      }
      // in shared memory where there is some: the all-gathers then read the peers' shards in place
      const shard = keep(group.shared(plan.shardLength, 'float32', 'param'));
      const buckets = plan.buckets.map((b) => {
        tidy(() => sliceInto(b, narrow(shard, 0, b.shardOffset, b.length / N))); // bucket by bucket: one bucket's full copy at a time
        return { ...b, owner: shard, ownerAt: b.shardOffset, flat: null, ready: 0, work: null, index: filled++, unused: [] };
      });
      return { params: g.params, shards: [shard], buckets, options: g.options };
    });
    this.order = this.arenas.flatMap((a) => a.buckets);
    for (const b of this.order) b.params.forEach((p, index) => this.bucketOf.set(p, { bucket: b, index }));
    if (this.inPlace && this.arenas.length) this.pointIntoShards();
    this.region = new BucketRegion(keep(group.shared(BucketRegion.sizeFor(this.order.map((b) => b.length)), 'float32', 'grad')));
  }

  /**
   * In place: once every rank has written its slices, each parameter becomes a view of its bucket's
   * region read whole (the same values: every rank started from the same parameters).
   */
  private pointIntoShards(): void {
    this.meet();
    noGrad(() => tidy(() => {
      for (const a of this.arenas) for (const b of a.buckets) {
        const whole = this.group.whole(b.owner);
        if (!whole) throw new Error(`ZeRO stage ${this.stage}: the group shares memory but cannot read a bucket's shards whole`);
        b.params.forEach((p, i) => p.setData(reshape(narrow(whole, 0, b.offsets[i], p.numel), p.shape)));
      }
    }));
  }

  /** The groups to build the optimizer over: the shards of each group, with the group's options. */
  get shardGroups(): { params: Tensor[]; options?: O }[] {
    return this.arenas.map((a) => ({ params: a.shards, ...(a.options === undefined ? {} : { options: a.options }) }));
  }

  /** Elements of this rank's shards (1/N of the trainable parameters, plus each bucket's padding). */
  get shardNumel(): number {
    return this.shards().reduce((n, s) => n + s.numel, 0);
  }

  private shards(): Tensor[] {
    return this.arenas.flatMap((a) => a.shards);
  }

  override arm(params: readonly Tensor[]): void {
    for (const s of this.shards()) {
      s.grad?.dispose();
      // every element is written by its bucket's reduceScatter (padding included): nothing to zero
      s.grad = memory.withTag('grad', () => keep(empty([s.numel], 'float32', { backend: s.backendName })));
    }
    for (const b of this.order) (b.ready = 0), (b.unused = []);
    this.nextToReduce = 0;
    this.copied.clear();
    const stray = params.filter((p) => !this.bucketOf.has(p));
    if (stray.length) throw new Error(`ZeRO stage ${this.stage}: ${stray.length} trainable parameter(s) (first [${stray[0].shape.join(', ')}]) are in no parameter group given to ZeroStage${this.stage}`);
    this.setArmed(params, (p) => this.gradReady(p), this.order.flatMap((b) => b.params), (p) => this.copied.has(p), (p) => this.gradReady(p, false));
  }

  override async finish(params: readonly Tensor[]): Promise<void> {
    this.disarm(`ZeRO stage ${this.stage}`);
    await this.settleMeetings();
    // a parameter whose hook never fired (unused in this forward, or unarmed) still goes in, as
    // its accumulated .grad or zeros, so every rank reduces every bucket, in plan order
    for (const b of this.order) for (const p of b.params) if (!this.copied.has(p)) this.gradReady(p);
    const works = this.order.map((b) => b.work!);
    this.last = null;
    for (const w of works) await w;
    for (const b of this.order) this.releaseFlat(b), (b.work = null);
    this.copied.clear();
    for (const p of params) p.zeroGrad();
  }

  /** sqrt of the sum over ranks of each shard's sum(g²) (padding is zero): the global norm. */
  override async gradNorm(): Promise<number> {
    const mine = this.shards().reduce((s, t) => s + (t.grad ? gradSquaredNorm(t.grad) : 0), 0);
    const [all] = await this.sum([mine]);
    return Math.sqrt(all);
  }

  override scaleGrads(_params: readonly Tensor[], factor: number): void {
    super.scaleGrads(this.shards(), factor);
  }

  /** The shards' gradients were written by the reduceScatters; in place, no rank may update its slices while a peer still reads them. */
  override beforeOptimizerStep(): void {
    if (this.inPlace && this.arenas.length) this.meet();
  }

  /** In place: the ranks meet once every slice holds its update. Else each rank's slice of every bucket is gathered into the parameters (in chunks of several buckets: shard_gather.ts). */
  override async afterOptimizerStep(): Promise<void> {
    if (this.inPlace) {
      await this.settleMeetings();
      if (this.arenas.length) await this.group.barrier();
      return;
    }
    for (const a of this.arenas) await this.gatherer.gather(a.shards[0], a.buckets);
  }

  override shardLayout(): ShardLayout {
    const N = this.worldSize;
    // per shard, in shardGroups' order: the pieces of the buckets whose slices it holds
    const groups = this.arenas.flatMap((a) => a.shards.map((shard) => ({
      shard,
      pieces: a.buckets.filter((b) => b.owner === shard).flatMap((b) => piecesIn(b.params, this.rank * (b.length / N), b.length / N, b.ownerAt)),
    })));
    return { stage: this.stage, params: this.arenas.flatMap((a) => a.params), groups };
  }

  /** Every rank here (a blocking barrier); its Work is kept for settleMeetings. */
  private meet(): void {
    this.meetings.push(this.group.barrierNow());
    this.group.waitNow();
  }

  /** Awaits the barriers met so far: a failed one (a dead peer) surfaces here. */
  private async settleMeetings(): Promise<void> {
    const ws = this.meetings;
    this.meetings = [];
    for (const w of ws) await w;
  }

  /** parameters whose gradient went into a bucket since arm() */
  private readonly copied = new Set<Tensor>();

  /**
   * A final gradient, counted in its bucket and copied into its buffer (freed from .grad), or, for a
   * weight known unused this step (`now` false), written just before the bucket reduces; the full
   * buckets from the next one on start reducing.
   */
  private gradReady(p: Tensor, now = true): void {
    const { bucket: b, index } = this.bucketOf.get(p)!;
    if (this.copied.has(p)) throw finalTwice(`ZeRO stage ${this.stage}`, p);
    this.copied.add(p);
    if (now) this.write(b, index);
    else b.unused.push(index);
    b.ready++;
    while (this.nextToReduce < this.order.length && this.order[this.nextToReduce].ready === this.order[this.nextToReduce].params.length) {
      const next = this.order[this.nextToReduce++];
      for (const i of next.unused) this.write(next, i);
      next.unused = [];
      this.reduce(next);
    }
  }

  /** The bucket's index-th gradient (its .grad, or zeros) into its place in the bucket's buffer. */
  private write(b: Bucket, index: number): void {
    const p = b.params[index];
    b.flat ??= memory.withTag('grad', () => keep(noGrad(() => this.region.acquire(b, b.index, b.length, b.params.reduce((n, q) => n + q.numel, 0), p.backendName))));
    noGrad(() => tidy(() => {
      const into = reshape(narrow(b.flat!, 0, b.offsets[index], p.numel), p.shape);
      if (p.grad) backendOf(p).kernels.copy(p.grad, into);
      else backendOf(p).kernels.fill(into, 0); // the region holds an earlier bucket's values
    }));
    if (p.grad && this.stage === 2) p.zeroGrad(); // the bucket holds it now
  }

  /** Starts the bucket's reduceScatter into this rank's slice of the shard gradient, then frees the previous bucket's buffer. */
  private reduce(b: Bucket): void {
    const out = narrow(b.owner.grad!, 0, b.ownerAt, b.length / this.worldSize);
    b.work = this.group.reduceScatterNow(out, b.flat!, 'sum');
    out.dispose();
    // reduceScatterNow returned after the previous call finished: its buffer is no longer read
    if (this.last && this.last !== b) this.releaseFlat(this.last);
    this.last = b;
  }

  private releaseFlat(b: Bucket): void {
    b.flat?.dispose();
    b.flat = null;
    this.region.release(b);
  }
}
