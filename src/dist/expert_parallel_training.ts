// Expert-parallel training (DeepSpeed-MoE's layout, Rajbhandari et al. 2022): the world's ranks form
// expert-parallel groups of N consecutive ranks; inside a group the experts of every MoE layer are
// split N ways (src/models/moe_expert_parallel.ts moves the tokens by all-to-all), and the ranks at
// the same place of every group hold the same experts (an expert-data-parallel group of world/N).
// The dense part (attention, norms, embeddings, routers) is data parallel over the world under the
// chosen ZeRO stage (0-2); each expert's gradient is already summed over its expert-parallel group's
// tokens by the all-to-all's backward, so it is all-reduced only over its expert-data-parallel group
// (nothing to do when N = world). The optimizer holds the dense shards (ZeRO) and this rank's whole
// experts. Checkpoints are not written while experts are split; gatherExperts rebuilds whole layers
// for the final save.
import { tensor } from '../ops/creation.js';
import { scaleGrads } from '../optim/clip.js';
import type { ParamGroup } from '../optim/optimizer.js';
import { noGrad } from '../tensor/grad_mode.js';
import { keep } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import type { DataParallel, ShardLayout } from '../train/data_parallel.js';
import { type Module } from '../nn/module.js';
import { ownExpertParameters, setExpertParallel } from '../models/moe.js';
import { decayParamGroups } from '../train/param_groups.js';
import { DistributedDataParallel } from './ddp.js';
import type { ProcessGroup } from './process_group.js';
import { ZeroStage1 } from './zero1.js';
import { ZeroStage2 } from './zero2.js';

/** The groups a rank belongs to for expert parallelism of size n over `world`. */
export interface ExpertParallelGroups {
  /** the n consecutive ranks whose experts together make every layer's whole set */
  expertParallel: ProcessGroup;
  /** the world / n ranks holding the same experts (null when n = world: nothing to reduce) */
  expertData: ProcessGroup | null;
}

/**
 * Creates the expert-parallel and expert-data-parallel groups (every rank calls it, as newGroup needs).
 * @example const { expertParallel } = await expertParallelGroups(world, 2)
 */
export async function expertParallelGroups(world: ProcessGroup, n: number): Promise<ExpertParallelGroups> {
  const W = world.size;
  if (!Number.isInteger(n) || n < 2 || W % n !== 0)
    throw new Error(`--expert-parallel ${n}: must be an integer >= 2 that divides the ${W} ranks (--nproc)`);
  const ranks = world.ranks;
  let expertParallel: ProcessGroup | null = null;
  for (let g = 0; g < W / n; g++) expertParallel = (await world.newGroup(ranks.slice(g * n, (g + 1) * n))) ?? expertParallel;
  let expertData: ProcessGroup | null = null;
  if (W > n) for (let j = 0; j < n; j++) expertData = (await world.newGroup(ranks.filter((_, i) => i % n === j))) ?? expertData;
  return { expertParallel: expertParallel!, expertData };
}

/** Splits optimizer groups into the dense part and this rank's experts (each keeps its group's options). */
export function splitExpertGroups<H>(groups: readonly ParamGroup<H>[], isExpert: (p: Tensor) => boolean): { dense: ParamGroup<H>[]; experts: ParamGroup<H>[] } {
  const part = (keepIt: (p: Tensor) => boolean): ParamGroup<H>[] =>
    groups.map((g) => ({ ...g, params: g.params.filter(keepIt) })).filter((g) => g.params.length > 0);
  return { dense: part((p) => !isExpert(p)), experts: part(isExpert) };
}

/** A data-parallel strategy for the dense parameters plus whole experts reduced over their expert-data group. */
export class ExpertParallelDataParallel implements DataParallel {
  constructor(
    readonly dense: DistributedDataParallel,
    /** this rank's (owned) expert parameters */
    readonly experts: ReadonlySet<Tensor>,
    readonly groups: ExpertParallelGroups,
  ) {}

  get rank(): number {
    return this.dense.rank;
  }
  get worldSize(): number {
    return this.dense.worldSize;
  }
  /** the world group (the launcher destroys it at the end) */
  get group(): ProcessGroup {
    return this.dense.group;
  }

  private densePart(params: readonly Tensor[]): Tensor[] {
    return params.filter((p) => !this.experts.has(p));
  }

  arm(params: readonly Tensor[]): void {
    this.dense.arm(this.densePart(params));
  }

  async finish(params: readonly Tensor[]): Promise<void> {
    await this.dense.finish(this.densePart(params));
    const ed = this.groups.expertData;
    for (const p of this.experts) {
      // an expert no token reached this step still takes part in the reduction (as zeros)
      if (!p.grad) p.grad = keep(noGrad(() => tensor(new Float32Array(p.numel), { shape: [...p.shape], backend: p.backendName })));
      if (ed) await ed.allReduce(p.grad, 'sum');
    }
  }

  sum(values: number[]): Promise<number[]> {
    return this.dense.sum(values);
  }

  /** sqrt(dense norm² + Σ over the expert-parallel group of each rank's expert squares): the whole model's norm. */
  async gradNorm(params: readonly Tensor[]): Promise<number> {
    const dense = await this.dense.gradNorm(this.densePart(params));
    let local = 0;
    for (const p of this.experts) for (const v of p.grad!.toFloat32Array()) local += v * v;
    const t = tensor(Float64Array.from([local]), { backend: 'cpu' });
    await this.groups.expertParallel.allReduce(t, 'sum');
    const experts = (t.toTypedArray() as Float64Array)[0];
    t.dispose();
    return Math.sqrt(dense * dense + experts);
  }

  scaleGrads(params: readonly Tensor[], factor: number): void {
    this.dense.scaleGrads(this.densePart(params), factor);
    scaleGrads([...this.experts], factor);
  }

  beforeOptimizerStep(): void {
    this.dense.beforeOptimizerStep();
  }

  afterOptimizerStep(): Promise<void> {
    return this.dense.afterOptimizerStep();
  }

  checkpointBlocker(): string | null {
    return 'expert parallel: each rank holds only its own experts, and checkpoints of split experts are not written yet (train without --save-every, or without --expert-parallel)';
  }

  shardLayout(): ShardLayout | null {
    return null;
  }
}

/** What expertParallelTraining reads of the run's settings. */
export interface ExpertParallelOptions {
  /** ranks per expert-parallel group (divides the world) */
  expertParallel: number;
  /** the dense part's ZeRO stage */
  zeroStage: 0 | 1 | 2;
  weightDecay: number;
  bucketBytes?: number;
}

/**
 * Splits a model's experts over expert-parallel groups of the world (after every rank took rank
 * 0's weights) and builds the strategy: the dense part under ZeRO stage 0-2 over the world, this
 * rank's experts whole. Returns it with the optimizer's groups (dense shards or groups, then experts).
 * @example const { dp, groups } = await expertParallelTraining(world, model, { expertParallel: 2, zeroStage: 1, weightDecay: 0.01 })
 */
export async function expertParallelTraining(world: ProcessGroup, model: Module, o: ExpertParallelOptions): Promise<{ dp: ExpertParallelDataParallel; groups: ParamGroup<{ weightDecay: number }>[] }> {
  const groups = await expertParallelGroups(world, o.expertParallel);
  if (setExpertParallel(model, groups.expertParallel) === 0) throw new Error(`--expert-parallel ${o.expertParallel}: the model has no MoE layers`);
  const mine = new Set(ownExpertParameters(model).filter((p) => p.requiresGrad));
  const split = splitExpertGroups(decayParamGroups(model, o.weightDecay), (p) => mine.has(p));
  let dense: DistributedDataParallel;
  let denseGroups = split.dense;
  if (o.zeroStage === 0) dense = new DistributedDataParallel(world, o.bucketBytes);
  else {
    const zero = o.zeroStage === 1 ? new ZeroStage1(world, split.dense, o.bucketBytes) : new ZeroStage2(world, split.dense, o.bucketBytes);
    [dense, denseGroups] = [zero, zero.shardGroups];
  }
  return { dp: new ExpertParallelDataParallel(dense, mine, groups), groups: [...denseGroups, ...split.experts] };
}
