// Per-expert routing load of a model's MoE layers for metrics.jsonl, so a user sees a collapsing
// router: every layer's token counts per expert (slots that chose it), its load imbalance
// max/mean (1 = perfectly balanced, E = every slot on one expert), and the fraction of slots
// dropped over capacity. Counts are summed over the step's micro-batches.
import type { Module } from '../nn/module.js';
import { SparseMoe } from '../models/moe.js';

export interface ExpertLoadMetrics {
  /** per MoE layer (module path): slots routed to each expert this step */
  expert_counts: Record<string, number[]>;
  /** per MoE layer: max / mean of its counts */
  expert_imbalance: Record<string, number>;
  /** the largest layer imbalance (scalar, for charts) and the dropped fraction of all slots */
  metrics: { moe_imbalance: number; moe_dropped_frac: number };
}

const blocks = (model: Module): [string, SparseMoe][] =>
  model.namedModules().filter((e): e is [string, SparseMoe] => e[1] instanceof SparseMoe);

/** Forgets the loads summed so far (evaluation forwards, a resumed step). */
export function resetExpertLoads(model: Module): void {
  for (const [, b] of blocks(model)) b.takeLoad();
}

/**
 * The step's loads, or null when the model has no MoE layer (or none ran).
 * @example const m = takeExpertLoadMetrics(model) // { expert_counts: { 'model.layers.0.block_sparse_moe': [9, 7] }, ... }
 */
export function takeExpertLoadMetrics(model: Module): ExpertLoadMetrics | null {
  const out: ExpertLoadMetrics = { expert_counts: {}, expert_imbalance: {}, metrics: { moe_imbalance: 0, moe_dropped_frac: 0 } };
  let slots = 0;
  let dropped = 0;
  for (const [path, b] of blocks(model)) {
    const load = b.takeLoad();
    if (!load) continue;
    const total = load.chosen.reduce((a, n) => a + n, 0);
    const imbalance = total > 0 ? Math.max(...load.chosen) / (total / load.chosen.length) : 0;
    out.expert_counts[path] = load.chosen;
    out.expert_imbalance[path] = imbalance;
    out.metrics.moe_imbalance = Math.max(out.metrics.moe_imbalance, imbalance);
    slots += total;
    dropped += load.dropped;
  }
  if (!Object.keys(out.expert_counts).length) return null;
  out.metrics.moe_dropped_frac = slots > 0 ? dropped / slots : 0;
  return out;
}
