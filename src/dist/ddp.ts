// Data parallel (ZeRO stage 0, torch's DistributedDataParallel): gradients are summed over ranks
// in buckets as backward finalizes them (each parameter's grad-ready hook adds it to the open
// bucket; a full bucket is all-reduced on the transport's worker thread while backward goes on).
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
import { gradNorm, scaleGrads } from '../optim/clip.js';
import { noGrad } from '../tensor/grad_mode.js';
import { keep, tidy } from '../tensor/scope.js';
import { memory } from '../tensor/memory.js';
import { shapeStr } from '../tensor/layout.js';
import type { Tensor } from '../tensor/tensor.js';
import type { DataParallel, ShardLayout } from '../train/data_parallel.js';
import type { ProcessGroup, Work } from './process_group.js';
import { flatten, scatterInto } from './flat.js';

/** DeepSpeed's reduce_bucket_size is in elements; 16 MiB of float32 keeps each call one transport piece */
export const DEFAULT_BUCKET_BYTES = 16 << 20;

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
  private open: Tensor[] = [];
  private openBytes = 0;
  private inFlight: Bucket[] = [];
  private disarm: (() => void)[] = [];
  /** parameters whose gradient went into a bucket this step */
  private readonly bucketed = new Set<Tensor>();
  /** stage 0 where calls start inside backward: every bucket's place, end to end (made at arm(), kept across steps) */
  private bucketViews: Tensor | null = null;
  /** where the next bucket's place begins in bucketViews */
  private cursor = 0;

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
    this.cursor = 0;
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
      if (!b.views) noGrad(() => scatterInto(b.flat, b.params.map((p) => p.grad!)));
      b.flat.dispose();
    }
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
    if (this.bucketed.has(p)) throw finalTwice('data parallel', p);
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
    if (!this.bucketViews) {
      const flat = memory.withTag('grad', () => noGrad(() => keep(flatten(params.map((p) => p.grad!), numel)))); // hooks fire inside the step's tidy(): the bucket must outlive it
      this.inFlight.push({ params, flat, work: this.group.allReduce(flat, 'sum'), views: false });
      return;
    }
    const flat = keep(narrow(this.bucketViews, 0, this.cursor, numel));
    this.cursor += numel;
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
