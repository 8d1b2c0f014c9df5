// Paged KV-cache ops (vLLM's PagedAttention): a pool of slots [S, Hkv, hd] shared by many
// sequences, slot = block * blockSize + offset, each sequence's blocks listed in a block table.
// pagedWrite_ stores new keys/values in their slots; pagedAttention runs a ragged batch of query
// tokens (decode tokens and prefill chunks of different sequences) each against its own
// sequence's keys up to its own position. Inference only (no backward: they throw under grad).
// pagedAttentionComposite is the definition the kernels are tested against: gather the sequence's
// keys with indexSelect, then scaledDotProductAttention.
import { backendOf } from '../backend/index.js';
import type { PagedKernels } from '../backend/kernels.js';
import { shapeStr } from '../tensor/layout.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { scaledDotProductAttention } from './attention.js';
import { tensor } from './creation.js';
import { emptyLike, inputs, needsGrad } from './dispatch.js';
import { to } from './elementwise.js';
import { cat, indexSelect } from './indexing.js';
import { toArray } from './transfer.js';
import { contiguous, reshape, select, transpose, unsqueeze } from './view.js';

/** Where each query token of a step reads: its sequence's row of the block table and its position. */
export interface PagedLayout {
  /** int32 [numSeqs, maxBlocks]: the blocks of each sequence in token order (unused entries any valid block) */
  blockTable: Tensor;
  /** int32 [N]: query n belongs to sequence (table row) seq[n] */
  seq: Tensor;
  /** int32 [N]: query n sits at position pos[n] of its sequence and sees keys 0..pos[n] */
  pos: Tensor;
  blockSize: number;
}

export interface PagedAttentionOptions {
  /** default 1 / sqrt(hd) */
  scale?: number;
  /** query at position p sees keys j with p - window < j <= p (Mistral's sliding window); 0 = all */
  window?: number;
  /** scores become softcap * tanh(scores / softcap) (Gemma 2); 0 = off */
  softcap?: number;
}

function kernelsOf(op: string, t: Tensor): PagedKernels {
  const k = backendOf(t).paged;
  if (!k) throw new Error(`${op}: backend '${t.backendName}' has no paged KV-cache kernels (serve one request at a time there)`);
  return k;
}

function checkPool(op: string, pool: Tensor): void {
  if (pool.ndim !== 3 || pool.dtype !== 'float32' || !pool.isContiguous())
    throw new Error(`${op}: the pool must be a contiguous float32 [slots, Hkv, hd] tensor, got ${pool.dtype} ${shapeStr(pool.shape)}`);
}

/**
 * pool[slots[i]] = src[i] in place: src [N, Hkv, hd] (any float dtype, stored as float32), slots int64 [N].
 * @example pagedWrite_(keyPool, k, slots)
 */
export function pagedWrite_(pool: Tensor, src: Tensor, slots: Tensor): Tensor {
  inputs('pagedWrite_', pool, src, slots);
  if (needsGrad(src)) throw new Error('pagedWrite_: the paged cache is for inference; run it under noGrad()');
  checkPool('pagedWrite_', pool);
  const [, Hkv, hd] = pool.shape;
  if (src.ndim !== 3 || src.shape[1] !== Hkv || src.shape[2] !== hd || slots.ndim !== 1 || slots.shape[0] !== src.shape[0] || slots.dtype !== 'int64')
    throw new Error(`pagedWrite_: src ${shapeStr(src.shape)} and int64 slots ${slots.dtype} ${shapeStr(slots.shape)} do not fit the pool ${shapeStr(pool.shape)}`);
  tidy(() => kernelsOf('pagedWrite_', pool).pagedWrite(contiguous(to(src, 'float32')), contiguous(slots), pool));
  return pool;
}

function checkLayout(op: string, q: Tensor, kPool: Tensor, vPool: Tensor, l: PagedLayout): void {
  checkPool(op, kPool);
  checkPool(op, vPool);
  const bad = (why: string): never => {
    throw new Error(`${op}: ${why} (q ${shapeStr(q.shape)}, pool ${shapeStr(kPool.shape)}, table ${shapeStr(l.blockTable.shape)})`);
  };
  if (q.ndim !== 3 || q.shape[2] !== kPool.shape[2]) bad('q must be [N, H, hd] with the pool\'s head dim');
  if (kPool.shape.some((s, i) => s !== vPool.shape[i])) bad('the key and value pools differ in shape');
  if (q.shape[1] % kPool.shape[1] !== 0) bad(`${q.shape[1]} query heads are not a multiple of ${kPool.shape[1]} kv heads`);
  if (l.blockTable.ndim !== 2 || l.blockTable.dtype !== 'int32') bad('the block table must be int32 [seqs, maxBlocks]');
  for (const [name, t] of [['seq', l.seq], ['pos', l.pos]] as const)
    if (t.ndim !== 1 || t.shape[0] !== q.shape[0] || t.dtype !== 'int32') bad(`${name} must be int32 [${q.shape[0]}], got ${t.dtype} ${shapeStr(t.shape)}`);
  if (!Number.isInteger(l.blockSize) || l.blockSize <= 0 || kPool.shape[0] % l.blockSize !== 0) bad(`block size ${l.blockSize} does not divide the pool`);
}

/**
 * Attention of a ragged batch over the paged cache: q [N, H, hd] -> float32 [N, H, hd]; the keys
 * of the step's own tokens must already be written (pagedWrite_).
 * @example const o = pagedAttention(q, kPool, vPool, { blockTable, seq, pos, blockSize: 16 })
 */
export function pagedAttention(q: Tensor, kPool: Tensor, vPool: Tensor, layout: PagedLayout, opts: PagedAttentionOptions = {}): Tensor {
  inputs('pagedAttention', q, kPool, vPool, layout.blockTable, layout.seq, layout.pos);
  if (needsGrad(q)) throw new Error('pagedAttention: the paged cache is for inference; run it under noGrad()');
  checkLayout('pagedAttention', q, kPool, vPool, layout);
  const window = opts.window ?? 0;
  if (!Number.isInteger(window) || window < 0) throw new Error(`pagedAttention: window must be a non-negative integer, got ${window}`);
  const { blockTable, seq, pos, blockSize } = layout;
  return tidy(() => {
    const qc = contiguous(to(q, 'float32'));
    const out = emptyLike(qc, qc.shape, 'float32');
    kernelsOf('pagedAttention', q).pagedAttention(qc, kPool, vPool, contiguous(blockTable), contiguous(seq), contiguous(pos), {
      scale: opts.scale ?? 1 / Math.sqrt(q.shape[2]), window, softcap: opts.softcap ?? 0, blockSize,
    }, out);
    return out;
  });
}

/** The definition: per query, its sequence's keys gathered from the pool, then scaledDotProductAttention. */
export function pagedAttentionComposite(q: Tensor, kPool: Tensor, vPool: Tensor, layout: PagedLayout, opts: PagedAttentionOptions = {}): Tensor {
  checkLayout('pagedAttentionComposite', q, kPool, vPool, layout);
  const table = toArray(layout.blockTable) as number[][];
  const [seq, pos] = [toArray(layout.seq) as number[], toArray(layout.pos) as number[]];
  const bs = layout.blockSize;
  const window = opts.window ?? 0;
  return tidy(() => cat(seq.map((s, n) => {
    const lo = window > 0 ? Math.max(0, pos[n] - window + 1) : 0;
    const slots = Array.from({ length: pos[n] - lo + 1 }, (_, i) => table[s][Math.floor((lo + i) / bs)] * bs + ((lo + i) % bs));
    const index = tensor(slots, { dtype: 'int64', backend: q.backendName });
    const keys = (pool: Tensor): Tensor => unsqueeze(transpose(indexSelect(pool, 0, index), 0, 1), 0); // [1, Hkv, L, hd]
    const qn = reshape(select(to(q, 'float32'), 0, n), [1, q.shape[1], 1, q.shape[2]]);
    const o = scaledDotProductAttention(qn, keys(kPool), keys(vPool), { scale: opts.scale, softcap: opts.softcap });
    return reshape(o, [1, q.shape[1], q.shape[2]]);
  }), 0));
}
