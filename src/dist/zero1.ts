// ZeRO stage 1 (Rajbhandari et al. 2020, "optimizer state partitioning"): each rank keeps optimizer
// state for 1/N of every parameter group, and every rank keeps every gradient until backward ends
// (the paper's Pos: gradients are not partitioned). The communication is stage 2's (zero2.ts), as
// DeepSpeed's reduce_scatter default does it: rank r owns slice r of every bucket, each full bucket
// is reduce-scattered into the owners' shard gradients while backward goes on, and an all-gather
// rebuilds the parameters after the update: Ψ + Ψ elements moved a step, DDP's volume, where an
// all-reduce of the gradients followed by the all-gather would move 3Ψ. On one machine the
// parameters lie in the shared shards and nothing is gathered (zero2.ts): Ψ. Optimizers that act
// elementwise (AdamW, SGD, Lion) give the same update on a shard as on the whole tensor.
import { ZeroStage2 } from './zero2.js';

export class ZeroStage1<O = unknown> extends ZeroStage2<O> {
  protected override get stage(): 1 | 2 {
    return 1;
  }
}
