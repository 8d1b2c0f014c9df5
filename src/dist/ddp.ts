// Data parallel (ZeRO stage 0, torch's DistributedDataParallel): gradients are summed over ranks
// in buckets as backward finalizes them (each parameter's grad-ready hook counts it in its bucket;
// a full bucket is all-reduced on the transport's worker thread while backward goes on). The
// buckets are a fixed plan that every rank shares, started in its order, as torch's DDP does: a
// graph that differs between ranks (an MoE layer's experts with no tokens on one rank) finalizes
// gradients in a different order on each, and buckets formed in arrival order would sum one rank's
// weights with another's. The first plan takes the parameters in reverse (as backward roughly runs:
// bucket_plan.ts); after the first step the buckets are rebuilt in the order rank 0's gradients
// arrived (torch's rebuilt buckets), so that each bucket is complete as soon as its gradients are
// (a layer's norms come last in its backward, not first). A weight that this rank's backward does
// not reach (unused this step) goes in as zeros as backward starts, as torch's
// find_unused_parameters does, so the buckets after it need not wait; where the graph hides what it
// reaches (a checkpointed region) that is known only at finish(), and the later buckets wait till then.
// Where the transport can start a call inside backward (startNow) and the gradients are float32 on
// the CPU, the buckets lie end to end in one gradient region (ProcessGroup.shared: where memory is
// shared, the all-reduce reads the peers' regions in place): a full bucket's gradients are copied
// into their place there and then become views of it (torch's gradient_as_bucket_view), so the
// all-reduce sums them in place and nothing is copied back. The region is the whole gradient (Ψ)
// and is kept from step to step, also through the forward, as torch's DDP keeps its buckets; a
// region outgrown by more parameters stays mapped until the group closes. Elsewhere each bucket is
// a buffer of its own, copied back at the end. The Trainer normalises each rank's loss by the
// global batch's tokens, so the sum is the global batch's gradient.
import { backendOf } from '../backend/index.js';
import { tensor } from '../ops/creation.js';
import { clone, narrow, reshape } from '../ops/view.js';
import { onNextBackward } from '../autograd/engine.js';
import { gradNorm, scaleGrads } from '../optim/clip.js';
import { noGrad } from '../tensor/grad_mode.js';
import { keep, tidy } from '../tensor/scope.js';
import { memory } from '../tensor/memory.js';
import { shapeStr } from '../tensor/layout.js';
import type { Tensor } from '../tensor/tensor.js';
import type { DataParallel, ShardLayout } from '../train/data_parallel.js';
import type { ProcessGroup, Work } from './process_group.js';
import { planBuckets } from './bucket_plan.js';
import { flatten, scatterInto } from './flat.js';

/** DeepSpeed's reduce_bucket_size is in elements; 16 MiB of float32 keeps each call one transport piece */
export const DEFAULT_BUCKET_BYTES = 16 << 20;

/** A bucket of the fixed plan: its parameters and its place in the gradient region. */
interface Planned {
  params: Tensor[];
  numel: number;
  /** where its place begins in the gradient region */
  at: number;
}

interface Bucket {
  params: Tensor[];
  flat: Tensor;
  work: Work;
  /** the gradients are views of flat (the gradient region): nothing to copy back */
  views: boolean;
}

/**
 * The error for a parameter whose gradient became final a second time while armed: its first
 * gradient is already in a bucket (and may be in flight), so the second would be lost or summed
 * wrong (torch's DDP refuses this too). `who` names the strategy.
 */
export function finalTwice(who: string, p: Tensor): Error {
  return new Error(`${who}: the gradient of a ${shapeStr(p.shape)} parameter${p.name ? ` '${p.name}'` : ''} was final twice while armed (a second backward before finish(), or a weight in two checkpointed regions?): it is reduced once`);
}

/** The elements of a bucket's parameters. */
const numelOf = (params: readonly Tensor[]): number => params.reduce((n, p) => n + p.numel, 0);

export class DistributedDataParallel implements DataParallel {
  /** the buckets of the parameters armed last (their sizes then), in the order they start, and each parameter's bucket and index; learned: rebuilt in rank 0's arrival order */
  private plan: { params: readonly Tensor[]; numels: number[]; buckets: Planned[]; bucketOf: Map<Tensor, number>; indexOf: Map<Tensor, number>; learned: boolean } | null = null;
  /** until the plan is learned: the parameters (their index in plan.params) in the order their gradients arrived from backward */
  private arrivals: number[] = [];
  /** per planned bucket: its gradients final this step */
  private arrived: number[] = [];
  /** the planned bucket that starts next */
  private nextBucket = 0;
  private inFlight: Bucket[] = [];
  /** removes the hooks (and the start-of-backward listener) that arm() set; null when not armed */
  private armed: (() => void)[] | null = null;
  /** parameters whose gradient went into a bucket this step */
  private readonly bucketed = new Set<Tensor>();
  /** stage 0 where calls start inside backward: every bucket's place, end to end (made at arm(), kept across steps) */
  private bucketViews: Tensor | null = null;

  constructor(readonly group: ProcessGroup, readonly bucketBytes = DEFAULT_BUCKET_BYTES) {}

  get rank(): number {
    return this.group.rank;
  }
  get worldSize(): number {
    return this.group.size;
  }

  arm(params: readonly Tensor[]): void {
    const numel = numelOf(params);
    if (!this.group.startsNow || numel === 0 || params.some((p) => p.dtype !== 'float32' || p.backendName !== 'cpu')) {
      this.bucketViews?.dispose();
      this.bucketViews = null;
    } else if ((this.bucketViews?.numel ?? 0) < numel) {
      this.bucketViews?.dispose(); // gradients still viewing it keep its storage until they go
      this.bucketViews = keep(this.group.shared(numel, 'float32', 'grad'));
    }
    // a gradient kept from the last step (not freed by the caller) may view a place that another
    // parameter's gradient takes this step: it becomes a buffer of its own again
    const region = this.bucketViews?.storage;
    for (const p of params) {
      const kept = p.grad;
      if (!region || kept?.storage !== region) continue;
      p.grad = memory.withTag('grad', () => keep(noGrad(() => clone(kept))));
      kept.dispose();
    }
    this.planFor(params);
    this.arrivals = [];
    this.arrived = this.plan!.buckets.map(() => 0);
    this.nextBucket = 0;
    this.bucketed.clear();
    const planned = this.plan!.buckets.flatMap((b) => b.params);
    this.setArmed(params, (p) => this.ready(p), planned, (p) => this.bucketed.has(p), (p) => this.ready(p, false));
  }

  /**
   * This step's arming (stages 0-2): each parameter's grad-ready hook calls `ready`; as the next
   * backward starts, each of `planned` (in order) that it does not reach and that is not `done` is
   * unused on this rank this step, so final already, and goes to `unused` (torch's
   * find_unused_parameters; nothing where the graph hides what it reaches: a checkpointed region).
   * An arming that never reached finish() (its step failed) is dropped first.
   */
  protected setArmed(params: readonly Tensor[], ready: (p: Tensor) => void, planned: readonly Tensor[], done: (p: Tensor) => boolean, unused: (p: Tensor) => void): void {
    for (const off of this.armed ?? []) off();
    const atStart = onNextBackward((reached) => {
      if (reached) for (const p of planned) if (!reached.has(p) && !done(p)) unused(p);
    });
    this.armed = [...params.map((p) => p.registerHook(() => ready(p))), atStart];
  }

  /** Removes this step's hooks at finish(); `who` names the strategy in the error for a finish() without arm(). */
  protected disarm(who: string): void {
    if (!this.armed) throw new Error(`${who}: finish() without arm() (every rank must arm the same parameters before the backward whose gradients it reduces)`);
    for (const off of this.armed) off();
    this.armed = null;
  }

  /** The buckets of these parameters: the last plan while they are the same tensors in the same order, else the parameters reversed. */
  private planFor(params: readonly Tensor[]): void {
    const same = this.plan?.params.length === params.length && params.every((p, i) => this.plan!.params[i] === p && this.plan!.numels[i] === p.numel);
    if (!same) this.replan(params, [...params].reverse(), false);
  }

  /** Buckets of `params` filled in `arrival` order (the order backward finalizes them). */
  private replan(params: readonly Tensor[], arrival: readonly Tensor[], learned: boolean): void {
    const bucketOf = new Map<Tensor, number>();
    let at = 0;
    const buckets = planBuckets([...arrival].reverse(), 1, Math.max(1, Math.floor(this.bucketBytes / 4))).buckets.map((b, i) => {
      for (const p of b.params) bucketOf.set(p, i);
      const numel = numelOf(b.params);
      at += numel;
      return { params: b.params, numel, at: at - numel };
    });
    this.plan = { params: [...params], numels: params.map((p) => p.numel), buckets, bucketOf, indexOf: new Map(params.map((p, i) => [p, i])), learned };
  }

  /**
   * After the first step: the plan rebuilt in the order rank 0's gradients arrived (every rank takes
   * rank 0's, so the plans agree; one bucket has no order to learn). The weights unused that step go
   * last, in reverse as at first: placed first, one used later would hold every bucket back.
   */
  private async learnOrder(): Promise<void> {
    const plan = this.plan!;
    if (plan.buckets.length <= 1) return void (plan.learned = true);
    const seen = new Set(this.arrivals);
    const unused = plan.params.map((_, i) => i).reverse().filter((i) => !seen.has(i));
    const order = tensor(Int32Array.from([...this.arrivals, ...unused]), { backend: 'cpu' }); // every parameter once: the same length on every rank
    await this.group.broadcast(order, this.group.ranks[0]);
    const arrival = Array.from(order.toTypedArray() as Int32Array, (i) => plan.params[i]);
    order.dispose();
    this.replan(plan.params, arrival, true);
  }

  /** Reduces what arm() armed (the plan's parameters; `params` are those). */
  async finish(_params: readonly Tensor[]): Promise<void> {
    this.disarm('data parallel');
    // a parameter whose hook never fired (unused in this forward and not known so at its start) has
    // no gradient here: every rank must still reduce the same buckets, so it goes in as zeros
    for (const b of this.plan?.buckets ?? []) for (const p of b.params) if (!this.bucketed.has(p)) this.ready(p, false);
    const buckets = this.inFlight;
    this.inFlight = [];
    for (const b of buckets) {
      await b.work;
      if (!b.views) noGrad(() => scatterInto(b.flat, b.params.map((p) => p.grad!)));
      b.flat.dispose();
    }
    if (this.plan && !this.plan.learned) await this.learnOrder();
  }

  /** Every rank holds the summed gradients: the norm is local (and the same on every rank). */
  async gradNorm(params: readonly Tensor[]): Promise<number> {
    return gradNorm([...params]);
  }

  scaleGrads(params: readonly Tensor[], factor: number): void {
    scaleGrads([...params], factor);
  }

  /** Stage 0 updates the whole model on every rank: nothing to prepare. */
  beforeOptimizerStep(): void {}

  /** Stage 0: every rank already holds the updated parameters. */
  async afterOptimizerStep(): Promise<void> {}

  /** Stage 0 can checkpoint from rank 0 (it holds everything). */
  checkpointBlocker(): string | null {
    return null;
  }

  /** Stage 0: every rank's optimizer holds whole parameters. */
  shardLayout(): ShardLayout | null {
    return null;
  }

  /** Every rank takes rank 0's values of these tensors (DDP's start: one set of initial weights). */
  async broadcastFromRank0(tensors: readonly Tensor[]): Promise<void> {
    for (const t of tensors) await this.group.broadcast(t, this.group.ranks[0]);
  }

  async sum(values: number[]): Promise<number[]> {
    const t = tensor(Float64Array.from(values), { backend: 'cpu' });
    await this.group.allReduce(t, 'sum');
    const out = Array.from(t.toTypedArray() as Float64Array);
    t.dispose();
    return out;
  }

  /** A final gradient (`arrived`: from backward, not zeros for an unused weight): counted in its bucket; the buckets complete from the next one on start, in plan order. */
  private ready(p: Tensor, arrived = true): void {
    if (this.bucketed.has(p)) throw finalTwice('data parallel', p);
    if (!p.grad) p.grad = keep(noGrad(() => tensor(new Float32Array(p.numel), { shape: [...p.shape], backend: p.backendName })));
    this.bucketed.add(p);
    const { buckets, bucketOf, learned, indexOf } = this.plan!;
    if (!learned && arrived) this.arrivals.push(indexOf.get(p)!);
    this.arrived[bucketOf.get(p)!]++;
    while (this.nextBucket < buckets.length && this.arrived[this.nextBucket] === buckets[this.nextBucket].params.length) this.allReduceBucket(buckets[this.nextBucket++]);
  }

  private allReduceBucket({ params, numel, at }: Planned): void {
    if (!this.bucketViews) {
      const flat = memory.withTag('grad', () => noGrad(() => keep(flatten(params.map((p) => p.grad!), numel)))); // hooks fire inside the step's tidy(): the bucket must outlive it
      this.inFlight.push({ params, flat, work: this.group.allReduce(flat, 'sum'), views: false });
      return;
    }
    const flat = keep(narrow(this.bucketViews, 0, at, numel));
    noGrad(() => {
      let at = 0;
      for (const p of params) {
        const view = keep(tidy(() => reshape(narrow(flat, 0, at, p.numel), p.shape)));
        backendOf(p).kernels.copy(p.grad!, view);
        p.grad!.dispose();
        p.grad = view;
        at += p.numel;
      }
    });
    this.inFlight.push({ params, flat, work: this.group.allReduceNow(flat, 'sum'), views: true });
  }
}
