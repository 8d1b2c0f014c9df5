// The experts' projections as grouped passes over the sorted slots, whatever wraps their weights:
//   plain Linear        groupedLinear over the weights (one matmulList pass; gate and up share it)
//   QuantLinear (QLoRA) the fused 4-bit quantLinear per expert on its row block of the sorted
//                       slots: tiles are dequantized inside the GEMM (native/quant.cc), never a
//                       float copy of an expert's weight; frozen, so only dx flows back
//   LoraLinear (PEFT)   the base as above plus s * groupedLinear(groupedLinear(dropout(x), A_e), B_e):
//                       the adapters of every expert in two more grouped passes
// Anything else (mixed kinds, biases, per-expert LoRA scalings) fails canGroup: the block then runs
// its per-expert loop, which takes any module.
import { dropout } from '../ops/attention.js';
import { add, mul } from '../ops/elementwise.js';
import { type GroupedOptions, groupedLinear, groupedLinears } from '../ops/fused/grouped_linear.js';
import { cat } from '../ops/indexing.js';
import { narrow } from '../ops/view.js';
import type { Tensor } from '../tensor/tensor.js';
import { Linear } from '../nn/layers.js';
import type { Module } from '../nn/module.js';
import { LoraLinear } from '../lora/lora_linear.js';
import { QuantLinear } from '../quant/quant_linear.js';

/** The weight of a bias-free Linear, else null. */
const plainWeight = (m: Module): Tensor | null => (m instanceof Linear && !m.bias ? m.weight : null);

/** Whether every module is a plain bias-free Linear (the projections groupedLinear runs directly). */
export const allPlain = (mods: readonly Module[]): boolean => mods.every((m) => plainWeight(m) !== null);

/** Each expert's QuantLinear on its rows of x (rows of a group are contiguous, so each call reads x in place). */
function groupedQuant(x: Tensor, mods: QuantLinear[], offsets: readonly number[]): Tensor {
  return cat(mods.map((m, e) => m.forward(narrow(x, 0, offsets[e], offsets[e + 1] - offsets[e]))), 0);
}

/** Every expert's LoRA-wrapped projection: base pass plus the adapters' two grouped passes. */
function groupedLora(x: Tensor, mods: LoraLinear[], offsets: readonly number[]): Tensor {
  const base = groupedProjection(x, mods.map((m) => m.base_layer), offsets);
  const p = mods.map((m) => m.projection());
  if (p.some((q) => q === null)) return base; // adapters disabled (canGroup: all or none)
  const q = p as NonNullable<(typeof p)[number]>[];
  const h = q[0].dropout > 0 ? dropout(x, q[0].dropout) : x;
  const down = groupedLinear(h, q.map((a) => a.A), offsets); // [S, r]
  return add(base, mul(groupedLinear(down, q.map((a) => a.B), offsets), q[0].scaling));
}

/**
 * Whether groupedProjection takes these modules (one per expert): all plain bias-free Linears, all
 * bias-free QuantLinears, or all LoraLinears over such bases whose adapters are all on with one
 * scaling and dropout, or all off.
 */
export function canGroup(mods: readonly Module[]): boolean {
  if (mods.every((m) => plainWeight(m) !== null)) return true;
  if (mods.every((m) => m instanceof QuantLinear && !m.bias)) return true;
  if (!mods.every((m) => m instanceof LoraLinear)) return false;
  const lora = mods as LoraLinear[];
  if (!canGroup(lora.map((m) => m.base_layer))) return false;
  const p = lora.map((m) => m.projection());
  return p.every((q) => q === null) || p.every((q) => q !== null && q.scaling === p[0]!.scaling && q.dropout === p[0]!.dropout);
}

/** One projection of every expert over the sorted rows x [S, in] -> [S, out] (mods must pass canGroup). */
export function groupedProjection(x: Tensor, mods: readonly Module[], offsets: readonly number[]): Tensor {
  const plain = mods.map(plainWeight);
  if (plain.every((w) => w !== null)) return groupedLinear(x, plain as Tensor[], offsets);
  if (mods.every((m) => m instanceof QuantLinear)) return groupedQuant(x, mods as QuantLinear[], offsets);
  if (mods.every((m) => m instanceof LoraLinear)) return groupedLora(x, mods as LoraLinear[], offsets);
  throw new Error(`groupedProjection: experts' projections cannot be grouped (${[...new Set(mods.map((m) => m.constructor.name))].join(', ')}); check canGroup first`);
}

/**
 * Several projections over the same rows (an expert's gate and up): one shared pass when all are plain
 * (opts then applies: halfOut rounds the outputs to the autocast dtype; other kinds keep float32 sums).
 * @example const [gate, up] = groupedProjections(sorted, [experts.map((e) => e.w1), experts.map((e) => e.w3)], offsets)
 */
export function groupedProjections(x: Tensor, sets: readonly (readonly Module[])[], offsets: readonly number[], opts: GroupedOptions = {}): Tensor[] {
  const plain = sets.map((mods) => mods.map(plainWeight));
  if (plain.every((ws) => ws.every((w) => w !== null))) return groupedLinears(x, plain as Tensor[][], offsets, opts);
  return sets.map((mods) => groupedProjection(x, mods, offsets));
}
