// Data parallel (ZeRO stage 0, torch's DistributedDataParallel): gradients are summed over ranks
// in buckets as backward finalizes them (each parameter's grad-ready hook adds it to the open
// bucket; a full bucket is copied into its place in the group's shared bucket region and
// all-reduced there on the transport's worker thread while backward goes on), then copied back.
// Where the transport can start a call inside backward (startNow), the next bucket's call waits
// for the previous one, whose sums then go back to their gradients and free its place, so two
// places suffice (bucket_region.ts); elsewhere every bucket keeps a buffer of its own until the
// end. The Trainer normalises each rank's loss by the global batch's tokens, so the sum is the
// global batch's gradient.
import { backendOf } from '../backend/index.js';
import { tensor } from '../ops/creation.js';
import { narrow, reshape } from '../ops/view.js';
import { gradNorm, scaleGrads } from '../optim/clip.js';
import { noGrad } from '../tensor/grad_mode.js';
import { keep, tidy } from '../tensor/scope.js';
import { memory } from '../tensor/memory.js';
import type { Tensor } from '../tensor/tensor.js';
import type { DataParallel, ShardLayout } from '../train/data_parallel.js';
import type { ProcessGroup, Work } from './process_group.js';
import { BucketRegion } from './bucket_region.js';
import { flatten, scatterInto } from './flat.js';

/** DeepSpeed's reduce_bucket_size is in elements; 16 MiB of float32 keeps each call one transport piece */
export const DEFAULT_BUCKET_BYTES = 16 << 20;

interface Bucket {
  params: Tensor[];
  flat: Tensor;
  work: Work;
}

/** The elements of a bucket's parameters. */
const numelOf = (params: readonly Tensor[]): number => params.reduce((n, p) => n + p.numel, 0);

export class DistributedDataParallel implements DataParallel {
  private open: Tensor[] = [];
  private openBytes = 0;
  private inFlight: Bucket[] = [];
  private disarm: (() => void)[] = [];
  /** parameters whose gradient went into a bucket this step */
  private readonly bucketed = new Set<Tensor>();
  /** where buckets fill and reduce (stage 0: made at the first arm(), sized for its parameters; ZeRO 1-2: by their plan) */
  protected region: BucketRegion | null = null;
  /** buckets flushed this step (which place of the region the next one takes) */
  private flushed = 0;

  constructor(readonly group: ProcessGroup, readonly bucketBytes = DEFAULT_BUCKET_BYTES) {}

  get rank(): number {
    return this.group.rank;
  }
  get worldSize(): number {
    return this.group.size;
  }

  arm(params: readonly Tensor[]): void {
    // a bucket closes once it reaches bucketBytes, so it holds at most that plus one parameter
    const most = Math.floor(this.bucketBytes / 4) + params.reduce((m, p) => Math.max(m, p.numel), 0);
    if (this.group.startsNow && (!this.region || this.region.numel < 2 * most)) {
      this.region?.dispose();
      this.region = new BucketRegion(keep(this.group.shared(2 * most, 'float32', 'grad')));
    }
    this.flushed = 0;
    this.bucketed.clear();
    this.disarm = params.map((p) => p.registerHook(() => this.ready(p)));
  }

  async finish(params: readonly Tensor[]): Promise<void> {
    for (const off of this.disarm) off();
    this.disarm = [];
    // a parameter whose hook never fired (unused in this forward) has no gradient here: every rank
    // must still reduce the same buckets, so it goes in as zeros (DDP's find_unused_parameters)
    for (const p of params) if (!this.bucketed.has(p)) this.ready(p);
    this.flush();
    const buckets = this.inFlight;
    this.inFlight = [];
    for (const b of buckets) {
      await b.work;
      this.unpack(b);
    }
  }

  /** A reduced bucket's sums back into its gradients; its buffer (or place) is free again. */
  private unpack(b: Bucket): void {
    noGrad(() => scatterInto(b.flat, b.params.map((p) => p.grad!)));
    b.flat.dispose();
    this.region?.release(b);
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

  private ready(p: Tensor): void {
    if (!p.grad) p.grad = keep(noGrad(() => tensor(new Float32Array(p.numel), { shape: [...p.shape], backend: p.backendName })));
    this.open.push(p);
    this.bucketed.add(p);
    this.openBytes += p.grad.numel * 4;
    if (this.openBytes >= this.bucketBytes) this.flush();
  }

  private flush(): void {
    if (!this.open.length) return;
    const params = this.open;
    this.open = [];
    this.openBytes = 0;
    const numel = numelOf(params);
    if (!this.region) {
      const flat = memory.withTag('grad', () => noGrad(() => keep(flatten(params.map((p) => p.grad!), numel)))); // hooks fire inside the step's tidy(): the bucket must outlive it
      this.inFlight.push({ params, flat, work: this.group.allReduce(flat, 'sum') });
      return;
    }
    const bucket = { params } as Bucket;
    bucket.flat = memory.withTag('grad', () => keep(this.region!.acquire(bucket, this.flushed++, numel, numel, params[0].backendName)));
    noGrad(() => tidy(() => {
      let at = 0;
      for (const p of params) (backendOf(p).kernels.copy(p.grad!, reshape(narrow(bucket.flat, 0, at, p.numel), p.shape)), (at += p.numel));
    }));
    bucket.work = this.group.allReduceNow(bucket.flat, 'sum');
    // allReduceNow returned after the previous call finished: its sums can go back, freeing its place
    const previous = this.inFlight.pop();
    if (previous) this.unpack(previous);
    this.inFlight.push(bucket);
  }
}
