// Top-k routing of a mixture-of-experts layer and the token permutation the grouped GEMM needs.
// Two orders, as the families differ:
//   softmax_topk: p = softmax(logits) over all experts, take the k largest (Mixtral, Qwen2-MoE),
//                 weights renormalised to sum 1 when normTopkProb (Mixtral always; Qwen2-MoE's
//                 norm_topk_prob)
//   topk_softmax: take the k largest logits, weights = softmax over those k (DeepSeek-V2 style)
// The choice of experts is made on the host (it decides which rows go where); the weights stay
// differentiable tensors (a gather of the probabilities). A capacity factor caps every expert at
// ceil(factor * tokens * k / E) slots (Switch Transformer / GShard): slots are admitted first
// choices first, then second choices, each in token order, and a dropped slot contributes
// nothing (the token keeps its residual). Factor 0 is dropless (the default).
import { tensor } from '../ops/creation.js';
import { div, to } from '../ops/elementwise.js';
import { gather } from '../ops/indexing.js';
import { sum } from '../ops/reduce.js';
import { softmax } from '../ops/softmax.js';
import { toFloat32Array } from '../ops/transfer.js';
import type { Tensor } from '../tensor/tensor.js';
import { shapeStr } from '../tensor/layout.js';

export type RoutingOrder = 'softmax_topk' | 'topk_softmax';

export interface RoutingOptions {
  topK: number;
  order: RoutingOrder;
  /** renormalise the k softmax_topk weights to sum 1 */
  normTopkProb: boolean;
  /** 0: dropless; else each expert keeps at most ceil(factor * N * k / E) slots */
  capacityFactor: number;
}

/** Where every kept (token, choice) slot goes, sorted by expert. */
export interface Routing {
  /** [N, k] routing weights (float32, differentiable w.r.t. the router logits) */
  weights: Tensor;
  /** the chosen experts per token, N x k, best first */
  experts: Int32Array[];
  /** per kept slot in expert order: its token row and its flat slot n * k + s */
  tokenOfSlot: number[];
  slotIndex: number[];
  /** G + 1 offsets into the sorted slots, one group per expert */
  offsets: number[];
  /** slots each expert was chosen for (before capacity dropping): the load to log */
  chosen: number[];
  /** slots dropped over capacity */
  dropped: number;
}

/**
 * The k largest entries of a row, best first (lower index first on ties, as the loop reference): an
 * insertion into a k-long list per entry (k is a handful), no sort or array per row: routing runs
 * on the host between the GEMMs, so its time is serial time in every MoE layer. (Sampling's
 * topIndices, src/infer/top_indices.ts, ranks up to a whole vocabulary row: a heap or a sort.)
 */
function topExperts(row: Float32Array, k: number): Int32Array {
  const top = new Int32Array(k);
  let n = 0;
  for (let e = 0; e < row.length; e++) {
    const v = row[e];
    let p = n;
    while (p > 0 && row[top[p - 1]] < v) p--; // strictly less: an equal earlier entry stays ahead
    if (p >= k) continue;
    for (let j = Math.min(n, k - 1); j > p; j--) top[j] = top[j - 1];
    top[p] = e;
    if (n < k) n++;
  }
  return top;
}

/** Capacity per expert for N tokens (Infinity when dropless). */
export function expertCapacity(n: number, numExperts: number, o: RoutingOptions): number {
  return o.capacityFactor > 0 ? Math.ceil((o.capacityFactor * n * o.topK) / numExperts) : Infinity;
}

/**
 * Routes router logits [N, E] (any float dtype): chosen experts, weights, the sorted permutation.
 * @example const r = route(gate.forward(x), { topK: 2, order: 'softmax_topk', normTopkProb: true, capacityFactor: 0 })
 */
export function route(logits: Tensor, o: RoutingOptions): Routing {
  if (logits.ndim !== 2) throw new Error(`route: router logits must be [tokens, experts], got ${shapeStr(logits.shape)}`);
  const [N, E] = logits.shape;
  const k = o.topK;
  if (!Number.isInteger(k) || k < 1 || k > E) throw new Error(`route: top-k ${k} must be in 1..${E} (the number of experts)`);
  const l32 = logits.dtype === 'float64' ? logits : to(logits, 'float32'); // HF routes in float32
  const probs = softmax(l32, -1);
  const host = toFloat32Array(o.order === 'softmax_topk' ? probs : l32);
  const experts = Array.from({ length: N }, (_, n) => topExperts(host.subarray(n * E, (n + 1) * E), k));
  const flat = new Array<number>(N * k);
  experts.forEach((r, n) => r.forEach((e, s) => (flat[n * k + s] = e)));
  const index = tensor(flat, { dtype: 'int64', shape: [N, k], backend: logits.backendName });
  let weights: Tensor;
  if (o.order === 'topk_softmax') weights = softmax(gather(l32, 1, index), -1);
  else {
    weights = gather(probs, 1, index);
    if (o.normTopkProb) weights = div(weights, sum(weights, -1, true));
  }
  return { weights, experts, ...sortSlots(experts, E, expertCapacity(N, E, o)) };
}

/**
 * The kept slots grouped by expert (token order inside a group), admitted by choice rank then token.
 * A counting sort over the flat slots n * k + s: each group's slots come out in increasing order.
 */
export function sortSlots(experts: Int32Array[], numExperts: number, capacity: number): Pick<Routing, 'tokenOfSlot' | 'slotIndex' | 'offsets' | 'chosen' | 'dropped'> {
  const k = experts[0]?.length ?? 0;
  const N = experts.length;
  const chosen = new Array<number>(numExperts).fill(0);
  const kept = new Array<number>(numExperts).fill(0);
  const keep = new Uint8Array(N * k);
  for (let s = 0; s < k; s++)
    for (let n = 0; n < N; n++) {
      const e = experts[n][s];
      if (chosen[e] < capacity) (keep[n * k + s] = 1), kept[e]++;
      chosen[e]++;
    }
  const offsets = [0];
  for (let e = 0; e < numExperts; e++) offsets.push(offsets[e] + kept[e]);
  const S = offsets[numExperts];
  const cursor = offsets.slice(0, numExperts);
  const slotIndex = new Array<number>(S);
  const tokenOfSlot = new Array<number>(S);
  for (let i = 0; i < N * k; i++) {
    if (!keep[i]) continue;
    const at = cursor[experts[Math.floor(i / k)][i % k]]++;
    slotIndex[at] = i;
    tokenOfSlot[at] = Math.floor(i / k);
  }
  return { tokenOfSlot, slotIndex, offsets, chosen, dropped: N * k - S };
}
