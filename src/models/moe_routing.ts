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

/** The k largest entries of a row, best first (lower index first on ties, as the loop reference). */
function topIndices(row: Float32Array, k: number): Int32Array {
  const idx = Array.from(row.keys()).sort((a, b) => row[b] - row[a] || a - b);
  return Int32Array.from(idx.slice(0, k));
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
  const experts = Array.from({ length: N }, (_, n) => topIndices(host.subarray(n * E, (n + 1) * E), k));
  const index = tensor(experts.flatMap((r) => [...r]), { dtype: 'int64', shape: [N, k], backend: logits.backendName });
  let weights: Tensor;
  if (o.order === 'topk_softmax') weights = softmax(gather(l32, 1, index), -1);
  else {
    weights = gather(probs, 1, index);
    if (o.normTopkProb) weights = div(weights, sum(weights, -1, true));
  }
  return { weights, experts, ...sortSlots(experts, E, expertCapacity(N, E, o)) };
}

/** The kept slots grouped by expert (token order inside a group), admitted by choice rank then token. */
export function sortSlots(experts: Int32Array[], numExperts: number, capacity: number): Pick<Routing, 'tokenOfSlot' | 'slotIndex' | 'offsets' | 'chosen' | 'dropped'> {
  const k = experts[0]?.length ?? 0;
  const chosen = new Array<number>(numExperts).fill(0);
  const keep = experts.map(() => new Array<boolean>(k).fill(false));
  for (let s = 0; s < k; s++)
    experts.forEach((r, n) => {
      keep[n][s] = chosen[r[s]] < capacity;
      chosen[r[s]]++;
    });
  const groups: number[][] = Array.from({ length: numExperts }, () => []);
  experts.forEach((r, n) => r.forEach((e, s) => keep[n][s] && groups[e].push(n * k + s)));
  const slotIndex = groups.flat();
  const offsets = groups.reduce((o, g) => [...o, o[o.length - 1] + g.length], [0]);
  return { tokenOfSlot: slotIndex.map((s) => Math.floor(s / k)), slotIndex, offsets, chosen, dropped: experts.length * k - slotIndex.length };
}
