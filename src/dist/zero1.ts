// ZeRO stage 1 (Rajbhandari et al. 2020, "optimizer state partitioning"): gradients are summed over
// ranks as in stage 0 (ddp.ts), but each rank keeps optimizer state for 1/N of every parameter
// group only. A group's parameters are one flat arena (padded to N equal shards); rank r's
// optimizer owns shard r as a float32 master tensor, updates it from the same slice of the summed
// gradient, and an allGather of the shards rebuilds every rank's full parameters. Optimizers that
// act elementwise (AdamW, SGD, Lion) give the same update on a shard as on the whole tensor.
import { backendOf } from '../backend/index.js';
import { zeros } from '../ops/creation.js';
import { clone, narrow, reshape } from '../ops/view.js';
import { noGrad } from '../tensor/grad_mode.js';
import { keep, tidy } from '../tensor/scope.js';
import { memory } from '../tensor/memory.js';
import type { Tensor } from '../tensor/tensor.js';
import type { ShardLayout } from '../train/data_parallel.js';
import { piecesIn } from './bucket_plan.js';
import { DistributedDataParallel } from './ddp.js';
import { flatten } from './flat.js';
import type { ProcessGroup } from './process_group.js';
import { ShardGatherer } from './shard_gather.js';

interface Arena<O> {
  params: Tensor[];
  /** elements of every parameter together, and of one rank's shard (the total padded to N shards) */
  numel: number;
  shardLen: number;
  /** this rank's master copy of its shard, the tensor the optimizer updates */
  shard: Tensor;
  options: O | undefined;
}

export class ZeroStage1<O = unknown> extends DistributedDataParallel {
  private readonly arenas: Arena<O>[];
  private readonly gatherer: ShardGatherer;

  /** groups: the optimizer's parameter groups (with their options); every rank holds the same values (broadcast first) */
  constructor(group: ProcessGroup, groups: readonly { params: Tensor[]; options?: O }[], bucketBytes?: number) {
    super(group, bucketBytes);
    this.gatherer = new ShardGatherer(group);
    const N = group.size;
    this.arenas = groups.filter((g) => g.params.length).map((g) => {
      if (g.params.some((p) => p.dtype !== 'float32')) throw new Error('ZeRO stage 1: trainable parameters must be float32 (master weights)');
      const numel = g.params.reduce((n, p) => n + p.numel, 0);
      const shardLen = Math.ceil(numel / N);
      // the master copy of this rank's shard counts as parameter memory (Ψ/N more than the model's)
      const shard = memory.withTag('param', () => noGrad(() => tidy(() => {
        const flat = flatten(g.params, shardLen * N);
        return keep(clone(narrow(flat, 0, group.rank * shardLen, shardLen)));
      })));
      return { params: g.params, numel, shardLen, shard, options: g.options };
    });
  }

  /** The groups to build the optimizer over: one shard tensor per group, with the group's options. */
  get shardGroups(): { params: Tensor[]; options?: O }[] {
    return this.arenas.map((a) => ({ params: [a.shard], ...(a.options === undefined ? {} : { options: a.options }) }));
  }

  /** Elements of optimizer-owned parameters on this rank (1/N of the model's trainable ones, plus padding). */
  get shardNumel(): number {
    return this.arenas.reduce((n, a) => n + a.shardLen, 0);
  }

  /** Sets each shard's .grad to its slice of the (summed, clipped) full gradients. */
  override beforeOptimizerStep(): void {
    noGrad(() => {
      for (const a of this.arenas) {
        a.shard.grad?.dispose();
        // only this rank's slice is copied (no flat copy of the whole gradient); padding and a parameter without a gradient stay zero
        const g = (a.shard.grad = memory.withTag('grad', () => keep(zeros([a.shardLen], { backend: a.shard.backendName }))));
        tidy(() => {
          for (const piece of piecesIn(a.params, this.rank * a.shardLen, a.shardLen, 0)) {
            const grad = piece.param.grad;
            if (grad) backendOf(grad).kernels.copy(narrow(reshape(grad, [-1]), 0, piece.start, piece.length), narrow(g, 0, piece.at, piece.length));
          }
        });
      }
    });
  }

  /** Gathers every rank's updated shard into the full parameters. */
  override async afterOptimizerStep(): Promise<void> {
    // in 4 MiB pieces through a kept buffer (shard_gather.ts), not one fresh Ψ-element buffer a step
    for (const a of this.arenas) await this.gatherer.gather(a.shard, [{ params: a.params, length: a.shardLen * this.worldSize, shardOffset: 0 }]);
  }

  override shardLayout(): ShardLayout {
    return { stage: 1, params: this.arenas.flatMap((a) => a.params), groups: this.arenas.map((a) => ({ shard: a.shard, pieces: piecesIn(a.params, this.rank * a.shardLen, a.shardLen, 0) })) };
  }
}
