// Sparse mixture-of-experts block: HF MixtralSparseMoeBlock (experts w1 gate, w3 up, w2 down,
// under `block_sparse_moe`) and Qwen2MoeSparseMoeBlock (experts gate/up/down_proj under `mlp`,
// plus a shared expert scaled by sigmoid(shared_expert_gate(x))). Routing is moe_routing.ts.
// forward() is the grouped computation (MegaBlocks-style): the routed (token, choice) slots are
// sorted by expert, every expert's gate and up run as one groupedLinears pass and the down
// projections as another, and the results are added back to their tokens times their routing
// weights. forwardLoop() is the per-expert loop HF runs, kept as the reference the grouped path
// is tested against and the path for experts whose projections cannot be grouped.
import { rand, tensor, zeros } from '../ops/creation.js';
import { add, mul, to, unary } from '../ops/elementwise.js';
import { glu } from '../ops/glu.js';
import { moeCombine } from '../ops/fused/moe_combine.js';
import { indexAdd, indexSelect } from '../ops/indexing.js';
import { reshape, unsqueeze } from '../ops/view.js';
import { autocast, autocastDtype } from '../tensor/autocast.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { Linear } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import type { InitOpts } from '../nn/init.js';
import type { DecoderConfig, MoeConfig } from './config.js';
import { Mlp } from './mlp.js';
import { type Routing, route } from './moe_routing.js';
import { allPlain, canGroup, groupedProjection, groupedProjections } from './moe_projections.js';
import { type BroadcastGroup, type ExpertParallelGroup, expertParallelCompute, gatherForeignExperts, releaseForeignExperts, ownedExperts } from './moe_expert_parallel.js';

/** Mixtral's expert (MixtralBlockSparseTop2MLP): w2(act(w1 x) * w3 x). */
export class Expert extends Module {
  w1: Linear;
  w2: Linear;
  w3: Linear;
  constructor(readonly c: DecoderConfig, init: InitOpts) {
    super();
    const F = c.moe?.expertSize ?? c.intermediateSize;
    this.w1 = new Linear(c.hiddenSize, F, { ...init, bias: false });
    this.w2 = new Linear(F, c.hiddenSize, { ...init, bias: false });
    this.w3 = new Linear(c.hiddenSize, F, { ...init, bias: false });
  }
  forward(x: Tensor): Tensor {
    return this.w2.forward(glu(this.w1.forward(x), this.w3.forward(x), this.c.activation));
  }
}

export type AnyExpert = Expert | Mlp;

/** An expert's three projections whatever its family calls them (LoRA or quantization may have replaced them). */
export function expertProjections(e: AnyExpert): { gate: Module; up: Module; down: Module } {
  return e instanceof Expert ? { gate: e.w1, up: e.w3, down: e.w2 } : { gate: e.gate_proj!, up: e.up_proj!, down: e.down_proj };
}


/** One forward's load per expert: how many slots chose it, how many were dropped over capacity. */
export interface ExpertLoad {
  chosen: number[];
  dropped: number;
  tokens: number;
}

/** A routed expert's config: the family's expert size in place of the dense intermediate size. */
const expertConfig = (c: DecoderConfig, size: number): DecoderConfig => ({ ...c, intermediateSize: size, fusedGateUp: false, mlpBias: false });

export class SparseMoe extends Module {
  gate: Linear;
  experts: AnyExpert[];
  shared_expert?: Mlp;
  shared_expert_gate?: Linear;
  /** the last forward's routing load (host numbers) */
  lastLoad: ExpertLoad | null = null;
  /** the loads summed since takeLoad() (the trainer logs one per step) */
  private summedLoad: ExpertLoad | null = null;
  /** run forwardLoop instead of the grouped path (the reference, for tests and benchmarks) */
  loop = false;
  /** the expert-parallel group this block's experts are split over (setExpertParallel), or null */
  private expertParallel: ExpertParallelGroup | null = null;

  constructor(readonly c: DecoderConfig, init: InitOpts) {
    super();
    const moe = c.moe!;
    this.gate = new Linear(c.hiddenSize, moe.numExperts, { ...init, bias: false });
    const ec = expertConfig(c, moe.expertSize);
    this.experts = Array.from({ length: moe.numExperts }, () => (moe.naming === 'mixtral' ? new Expert(c, init) : new Mlp(ec, init)));
    if (moe.sharedExpertSize > 0) {
      this.shared_expert = new Mlp(expertConfig(c, moe.sharedExpertSize), init);
      this.shared_expert_gate = new Linear(c.hiddenSize, 1, { ...init, bias: false });
    }
  }

  /** The routing load summed over every forward since the last call (null: none ran), and a fresh start. */
  takeLoad(): ExpertLoad | null {
    const l = this.summedLoad;
    this.summedLoad = null;
    return l;
  }

  private get moe(): MoeConfig {
    return this.c.moe!;
  }

  /** Router input (jittered in training, Mixtral's router_jitter_noise), logits and routing. */
  private routeTokens(x: Tensor): { input: Tensor; routerLogits: Tensor; r: Routing } {
    const [B, T, D] = x.shape;
    let input = reshape(x, [B * T, D]);
    const j = this.moe.jitterNoise;
    if (this.training && j > 0) input = mul(input, to(add(mul(rand([B * T, D], { backend: x.backendName }), 2 * j), 1 - j), x.dtype));
    // the router stays float32 under autocast: routing decisions and the aux loss see unrounded logits
    const routerLogits = autocast(null, () => this.gate.forward(input));
    const r = route(routerLogits, { topK: this.moe.topK, order: this.moe.routing, normTopkProb: this.moe.normTopkProb, capacityFactor: this.moe.capacityFactor });
    this.lastLoad = { chosen: r.chosen, dropped: r.dropped, tokens: B * T };
    const sum = this.summedLoad;
    this.summedLoad = sum
      ? { chosen: sum.chosen.map((n, e) => n + r.chosen[e]), dropped: sum.dropped + r.dropped, tokens: sum.tokens + B * T }
      : { ...this.lastLoad, chosen: [...r.chosen] };
    return { input, routerLogits, r };
  }

  /** The routed experts' outputs y [S, D] (in sorted slot order) added into their tokens times the weights. */
  private combine(input: Tensor, r: Routing, y: Tensor, tokenIdx: Tensor): Tensor {
    const [N] = input.shape;
    const slotIdx = tensor(r.slotIndex, { dtype: 'int64', backend: input.backendName });
    const w = indexSelect(reshape(to(r.weights, y.dtype), [-1]), 0, slotIdx); // [S]
    return to(moeCombine(y, tokenIdx, w, N), input.dtype);
  }

  /** Qwen2-MoE's shared expert, always on: sigmoid(shared_expert_gate(x)) * shared_expert(x). */
  private withShared(input: Tensor, routed: Tensor): Tensor {
    if (!this.shared_expert) return routed;
    return add(routed, mul(unary('sigmoid', this.shared_expert_gate!.forward(input)), this.shared_expert.forward(input)));
  }

  /** x [B, T, D] -> out [B, T, D] and router logits [B*T, E]; the grouped computation. */
  forward(x: Tensor): { out: Tensor; routerLogits: Tensor } {
    if (this.loop || !this.groupable()) {
      if (this.expertParallel) throw new Error('SparseMoe: expert parallelism needs the grouped path (plain, 4-bit or LoRA experts of one kind)');
      return this.forwardLoop(x);
    }
    return tidy(() => {
      const { input, routerLogits, r } = this.routeTokens(x);
      const tokenIdx = tensor(r.tokenOfSlot, { dtype: 'int64', backend: x.backendName });
      const sorted = indexSelect(input, 0, tokenIdx); // [S, D], S = kept slots, grouped by expert
      const ep = this.expertParallel;
      let y: Tensor;
      if (ep) {
        const { first, count } = ownedExperts(this.experts.length, ep);
        y = expertParallelCompute(sorted, r.offsets, ep, (xs, offsets) => this.runExperts(this.experts.slice(first, first + count), xs, offsets));
      } else y = this.runExperts(this.experts, sorted, r.offsets);
      const out = this.withShared(input, this.combine(input, r, y, tokenIdx));
      return { out: reshape(out, x.shape), routerLogits };
    });
  }

  /**
   * Experts over their sorted rows: gate and up in one grouped pass, then down. With plain experts
   * under bf16 autocast, gate and up come out of their GEMMs rounded to bf16 (halfOut), SiLU*up reads
   * and writes bf16 and down reads that directly: no float32 [slots, ffn] buffer or cast in either
   * pass. Under fp16 autocast they keep float32 sums (fp16's range could overflow an activation).
   */
  private runExperts(experts: readonly AnyExpert[], sorted: Tensor, offsets: readonly number[]): Tensor {
    const p = experts.map(expertProjections);
    const halfOut = autocastDtype() === 'bfloat16' && (['gate', 'up', 'down'] as const).every((n) => allPlain(p.map((e) => e[n])));
    const [g, u] = groupedProjections(sorted, [p.map((e) => e.gate), p.map((e) => e.up)], offsets, { halfOut });
    return groupedProjection(glu(g, u, this.c.activation), p.map((e) => e.down), offsets);
  }

  /**
   * Splits the experts over an expert-parallel group (moe_expert_parallel.ts): this rank computes its
   * own experts for every rank's tokens; the others' weights are released here (their owners train them).
   */
  setExpertParallel(group: ExpertParallelGroup | null): void {
    if (group) releaseForeignExperts(this.experts, group);
    this.expertParallel = group;
  }

  /** Ends expert parallelism: the other ranks' experts come back from their owners (gatherForeignExperts). */
  async gatherExperts(group: BroadcastGroup): Promise<void> {
    await gatherForeignExperts(this.experts, group);
    this.expertParallel = null;
  }

  /** This rank's own experts' parameters (all of them without expert parallelism). */
  ownExpertParameters(): Tensor[] {
    const ep = this.expertParallel;
    const { first, count } = ep ? ownedExperts(this.experts.length, ep) : { first: 0, count: this.experts.length };
    return this.experts.slice(first, first + count).flatMap((e) => e.parameters());
  }

  /** Whether every projection of the experts can run grouped (else forwardLoop runs). */
  groupable(): boolean {
    const p = this.experts.map(expertProjections);
    return (['gate', 'up', 'down'] as const).every((n) => canGroup(p.map((e) => e[n])));
  }

  /** The same block as HF's loop: each expert's module on its own tokens, one after another. */
  forwardLoop(x: Tensor): { out: Tensor; routerLogits: Tensor } {
    return tidy(() => {
      const { input, routerLogits, r } = this.routeTokens(x);
      const parts = this.experts.map((e, i) => {
        const n = r.offsets[i + 1] - r.offsets[i];
        if (!n) return null;
        const rows = tensor(r.tokenOfSlot.slice(r.offsets[i], r.offsets[i + 1]), { dtype: 'int64', backend: x.backendName });
        return e.forward(indexSelect(input, 0, rows));
      });
      const [N, D] = input.shape;
      let routed = zeros([N, D], { dtype: input.dtype, backend: input.backendName });
      const slotW = reshape(to(r.weights, input.dtype), [-1]);
      parts.forEach((y, i) => {
        if (!y) return;
        const [a, b] = [r.offsets[i], r.offsets[i + 1]];
        const rows = tensor(r.tokenOfSlot.slice(a, b), { dtype: 'int64', backend: x.backendName });
        const w = indexSelect(slotW, 0, tensor(r.slotIndex.slice(a, b), { dtype: 'int64', backend: x.backendName }));
        routed = indexAdd(routed, 0, rows, mul(y, unsqueeze(w, 1)));
      });
      return { out: reshape(this.withShared(input, routed), x.shape), routerLogits };
    });
  }
}

/**
 * Splits every MoE layer's experts over an expert-parallel group; returns the number of MoE layers.
 * @example const ep = await world.newGroup([0, 1, 2, 3]); setExpertParallel(model, ep!)
 */
export function setExpertParallel(model: Module, group: ExpertParallelGroup | null): number {
  const blocks = moeBlocks(model);
  for (const b of blocks) b.setExpertParallel(group);
  return blocks.length;
}

/** Every MoE layer of a model (its SparseMoe blocks). */
const moeBlocks = (model: Module): SparseMoe[] => model.namedModules().map(([, m]) => m).filter((m): m is SparseMoe => m instanceof SparseMoe);

/**
 * This rank's expert parameters over every MoE layer (the ones expert parallelism keeps whole on it).
 * @example const mine = new Set(ownExpertParameters(model))
 */
export const ownExpertParameters = (model: Module): Tensor[] => moeBlocks(model).flatMap((b) => b.ownExpertParameters());

/**
 * Undoes setExpertParallel on every MoE layer: the experts other ranks trained come back from them.
 * @example await gatherExperts(model, ep) // before rank 0 saves the whole model
 */
export async function gatherExperts(model: Module, group: BroadcastGroup): Promise<void> {
  for (const b of moeBlocks(model)) await b.gatherExperts(group);
}
