// Data parallel (ZeRO stage 0, torch's DistributedDataParallel): gradients are summed over ranks
// in buckets as backward finalizes them (each parameter's grad-ready hook adds it to the open
// bucket; a full bucket is flattened and all-reduced on the transport's worker thread while
// backward goes on), then copied back. The Trainer normalises each rank's loss by the global
// batch's tokens, so the sum is the global batch's gradient.
import { backendOf } from '../backend/index.js';
import { tensor } from '../ops/creation.js';
import { cat } from '../ops/indexing.js';
import { reshape } from '../ops/view.js';
import { gradNorm, scaleGrads } from '../optim/clip.js';
import { noGrad } from '../tensor/grad_mode.js';
import { keep } from '../tensor/scope.js';
import { memory } from '../tensor/memory.js';
import type { Tensor } from '../tensor/tensor.js';
import type { DataParallel, ShardLayout } from '../train/data_parallel.js';
import type { ProcessGroup, Work } from './process_group.js';
import { scatterInto } from './flat.js';

/** DeepSpeed's reduce_bucket_size is in elements; 16 MiB of float32 keeps each call one transport piece */
export const DEFAULT_BUCKET_BYTES = 16 << 20;

interface Bucket {
  params: Tensor[];
  flat: Tensor;
  work: Work;
}

export class DistributedDataParallel implements DataParallel {
  private open: Tensor[] = [];
  private openBytes = 0;
  private inFlight: Bucket[] = [];
  private disarm: (() => void)[] = [];

  constructor(readonly group: ProcessGroup, readonly bucketBytes = DEFAULT_BUCKET_BYTES) {}

  get rank(): number {
    return this.group.rank;
  }
  get worldSize(): number {
    return this.group.size;
  }

  arm(params: readonly Tensor[]): void {
    this.disarm = params.map((p) => p.registerHook(() => this.ready(p)));
  }

  async finish(params: readonly Tensor[]): Promise<void> {
    for (const off of this.disarm) off();
    this.disarm = [];
    // a parameter whose hook never fired (unused in this forward) has no gradient here: every rank
    // must still reduce the same buckets, so it goes in as zeros (DDP's find_unused_parameters)
    const reduced = new Set([...this.inFlight.flatMap((b) => b.params), ...this.open]);
    for (const p of params) if (!reduced.has(p)) this.ready(p);
    this.flush();
    const buckets = this.inFlight;
    this.inFlight = [];
    for (const b of buckets) {
      await b.work;
      // tidy: narrow's handle goes too, or the bucket's storage outlives its dispose()
      noGrad(() => scatterInto(b.flat, b.params.map((p) => p.grad!)));
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
    if (!p.grad) p.grad = keep(noGrad(() => tensor(new Float32Array(p.numel), { shape: [...p.shape], backend: p.backendName })));
    this.open.push(p);
    this.openBytes += p.grad.numel * 4;
    if (this.openBytes >= this.bucketBytes) this.flush();
  }

  private flush(): void {
    if (!this.open.length) return;
    const params = this.open;
    this.open = [];
    this.openBytes = 0;
    const flat = memory.withTag('grad', () => noGrad(() => {
      const parts = params.map((p) => reshape(p.grad!, [-1]));
      const f = cat(parts, 0);
      parts.forEach((t) => t.dispose());
      return keep(f); // hooks fire inside the step's tidy(): the bucket must outlive it
    }));
    this.inFlight.push({ params, flat, work: this.group.allReduce(flat, 'sum') });
  }
}
