// Expert parallelism (GShard / DeepSpeed-MoE): the experts of every MoE layer are split across an
// expert-parallel group of P ranks (rank r owns experts [r E/P, (r+1) E/P)); each rank routes its
// own tokens, sends each slot to the rank owning its expert, runs its experts' grouped GEMMs over
// what it received from every rank, and sends the results back. The exchanges:
//   1. allToAll of per-expert slot counts (each rank learns how many rows every peer sends it)
//   2. allReduce(max) of the largest block, M rows: the transport's allToAll moves equal blocks,
//      so each block is padded to M rows (a zero row stands in for the padding)
//   3. allToAll of the slots' rows [P*M, D], and 4. allToAll of the results back
// The all-to-all is its own transpose, so backward runs the same two exchanges in reverse order
// (expertAllToAll records that). A rank keeps only its own experts' weights (releaseForeignExperts).
// The dense part is replicated: its gradients are all-reduced over the data-parallel group by the
// caller, as for any data-parallel model.
import { tensor, zeros } from '../ops/creation.js';
import { emptyLike, record } from '../ops/dispatch.js';
import { cat, indexSelect } from '../ops/indexing.js';
import { toFloat32Array } from '../ops/transfer.js';
import { contiguous } from '../ops/view.js';
import { isGradEnabled } from '../tensor/grad_mode.js';
import type { Tensor } from '../tensor/tensor.js';
import { type Module, Parameter, isParameter } from '../nn/module.js';
import { isMeta, metaTensor } from '../tensor/meta.js';

/** What expert parallelism needs of a process group (src/dist's ProcessGroup provides it). */
export interface ExpertParallelGroup {
  readonly rank: number;
  readonly size: number;
  /** block r of output = block `rank` of rank r's input, blocking until done */
  allToAllSync(output: Tensor, input: Tensor): void;
  allReduceSync(t: Tensor, op: 'max'): void;
}

/** The experts rank `rank` of the group owns: [first, first + count). */
export function ownedExperts(numExperts: number, group: Pick<ExpertParallelGroup, 'rank' | 'size'>): { first: number; count: number } {
  if (numExperts % group.size !== 0) throw new Error(`expert parallel: ${numExperts} experts do not split evenly over ${group.size} ranks`);
  const count = numExperts / group.size;
  return { first: group.rank * count, count };
}

/** Differentiable all-to-all of equal row blocks: backward sends the gradients back the same way. */
function expertAllToAll(x: Tensor, group: ExpertParallelGroup): Tensor {
  const xc = contiguous(x);
  const out = emptyLike(xc, xc.shape);
  group.allToAllSync(out, xc);
  if (xc !== x) xc.dispose();
  if (!isGradEnabled() || !x.requiresGrad) return out;
  return record('expertAllToAll', out, [x], (g) => {
    const gc = contiguous(g);
    const dx = emptyLike(gc, gc.shape);
    group.allToAllSync(dx, gc);
    if (gc !== g) gc.dispose();
    return [dx];
  });
}

/** Rows of x picked by index, where index x.shape[0] picks a zero row (the padding). */
function pick(x: Tensor, index: number[]): Tensor {
  const padded = cat([x, zeros([1, x.shape[1]], { dtype: x.dtype, backend: x.backendName })], 0);
  return indexSelect(padded, 0, tensor(index, { dtype: 'int64', backend: x.backendName }));
}

/**
 * The routed experts' outputs for this rank's sorted slots [S, D] (grouped by expert, offsets over all
 * E experts), computed where the experts live. `local(x, offsets)` runs this rank's experts (grouped
 * by local expert) and returns their outputs. Call inside a tidy scope.
 */
export function expertParallelCompute(
  sorted: Tensor, offsets: readonly number[], group: ExpertParallelGroup, local: (x: Tensor, offsets: number[]) => Tensor,
): Tensor {
  const E = offsets.length - 1;
  const P = group.size;
  const { count: Epr } = ownedExperts(E, group);
  const S = sorted.shape[0];
  const opts = { backend: sorted.backendName };
  // 1. slot counts: what I send each expert -> what every rank sends my experts
  const sendCounts = tensor(Array.from({ length: E }, (_, e) => offsets[e + 1] - offsets[e]), opts);
  const recvCountsT = emptyLike(sendCounts, [E]);
  group.allToAllSync(recvCountsT, sendCounts);
  const recvCounts = Array.from(toFloat32Array(recvCountsT)); // [s * Epr + j]: rows from rank s for my expert j
  const sendRows = Array.from({ length: P }, (_, q) => offsets[(q + 1) * Epr] - offsets[q * Epr]);
  // 2. the padded block size
  const m = tensor([Math.max(1, ...sendRows)], opts);
  group.allReduceSync(m, 'max');
  const M = m.item();
  // 3. my slots to their experts' ranks: block q = rows for q's experts, padded to M
  const sendIdx = Array.from({ length: P * M }, (_, i) => {
    const [q, r] = [Math.floor(i / M), i % M];
    return r < sendRows[q] ? offsets[q * Epr] + r : S;
  });
  const received = expertAllToAll(pick(sorted, sendIdx), group); // [P*M, D], block s from rank s
  // regroup by my local expert j (sources in rank order inside a group)
  const recvIdx: number[] = [];
  const localOffsets = [0];
  for (let j = 0; j < Epr; j++) {
    for (let s = 0; s < P; s++) {
      const before = recvCounts.slice(s * Epr, s * Epr + j).reduce((a, b) => a + b, 0);
      for (let r = 0; r < recvCounts[s * Epr + j]; r++) recvIdx.push(s * M + before + r);
    }
    localOffsets.push(recvIdx.length);
  }
  const y = local(pick(received, recvIdx), localOffsets); // [R, D]
  // 4. results back to where their rows came from, then into my sorted order
  const back = new Array<number>(P * M).fill(recvIdx.length);
  recvIdx.forEach((at, row) => (back[at] = row));
  const returned = expertAllToAll(pick(y, back), group); // block q: my rows q computed, in the order I sent them
  const retIdx: number[] = [];
  for (let q = 0; q < P; q++) for (let r = 0; r < sendRows[q]; r++) retIdx.push(q * M + r);
  return indexSelect(returned, 0, tensor(retIdx, { dtype: 'int64', ...opts }));
}

/**
 * Releases the weights of the experts other ranks own: each becomes a frozen meta placeholder of the
 * same shape (no storage, so a rank holds only its 1/P of the expert weights; their owners train them).
 */
export function releaseForeignExperts(experts: readonly Module[], group: Pick<ExpertParallelGroup, 'rank' | 'size'>): void {
  const { first, count } = ownedExperts(experts.length, group);
  experts.forEach((e, i) => {
    if (i >= first && i < first + count) return;
    for (const [, m] of e.namedModules())
      for (const [key, v] of Object.entries(m))
        if (isParameter(v) && !isMeta(v)) {
          Reflect.set(m, key, Parameter(metaTensor([...v.shape], v.dtype), false));
          v.dispose();
        }
  });
}

/** What gatherForeignExperts needs of a process group: its global ranks and a broadcast from one of them. */
export interface BroadcastGroup {
  readonly rank: number;
  readonly size: number;
  readonly ranks: readonly number[];
  broadcast(t: Tensor, root: number): PromiseLike<void>;
}

/**
 * The inverse of releaseForeignExperts: every expert's owner broadcasts its weights and the other
 * ranks take them in place of their meta placeholders (trainable again), so each rank holds whole
 * layers (the final save of an expert-parallel run). Every rank of the group calls it.
 */
export async function gatherForeignExperts(experts: readonly Module[], group: BroadcastGroup): Promise<void> {
  const { first, count } = ownedExperts(experts.length, group);
  // a taken-back weight is trainable as the same weight of this rank's own first expert (LoRA: frozen bases)
  const trainable = new Map(experts[first].namedParameters().map(([n, p]) => [n, p.requiresGrad]));
  const backend = experts[first].parameters()[0]?.backendName ?? 'cpu';
  for (const [i, e] of experts.entries()) {
    const owner = group.ranks[Math.floor(i / count)];
    for (const [prefix, m] of e.namedModules())
      for (const [key, v] of Object.entries(m)) {
        if (!isParameter(v)) continue;
        const t = isMeta(v) ? zeros([...v.shape], { dtype: v.dtype, backend }) : v;
        await group.broadcast(t, owner);
        if (t !== v) Reflect.set(m, key, Parameter(t, trainable.get(prefix ? `${prefix}.${key}` : key) ?? true));
      }
  }
}
