// Block-sparse attention: softmax(q kᵀ scale) v over only the [block x block] tiles a layout
// (block_layout.ts) keeps, as DeepSpeed's sparse self-attention computes it, with flash-style
// tiles that skip the empty blocks (native/block_sparse_attention.cc; the reference is
// src/backend/ref/block_sparse_attention.ts). It equals scaledDotProductAttention with the layout's
// element mask (blockSparseMask); a backend without the kernels runs exactly that.
// Backward (FlashAttention-2, recomputing p from the saved logsumexp): D_i = do_i.o_i,
//   ds_ij = p_ij (do_i.v_j - D_i),  dq_i = scale sum_j ds_ij k_j,  dk_j = scale sum_i ds_ij q_i,  dv_j = sum_i p_ij do_i
import { backendOf } from '../../backend/index.js';
import type { BlockSparseOpts } from '../../backend/kernels.js';
import { isHalf } from '../../tensor/dtype.js';
import { tidy } from '../../tensor/scope.js';
import type { Tensor } from '../../tensor/tensor.js';
import { checkAttention, scaledDotProductAttention } from '../attention.js';
import { tensor } from '../creation.js';
import { emptyLike, inputs, needsGrad, record, save } from '../dispatch.js';
import { to } from '../elementwise.js';
import { contiguous } from '../view.js';
import type { BlockLayout } from './block_layout.js';

export interface BlockSparseAttentionOptions {
  /** query i (at position i + Tk - Tq) never sees a later key, inside the diagonal blocks too */
  causal?: boolean;
  /** default 1 / sqrt(hd) */
  scale?: number;
}

function check(q: Tensor, k: Tensor, v: Tensor, layout: BlockLayout, opts: BlockSparseAttentionOptions): BlockSparseOpts {
  const { scale } = checkAttention(q, k, v, { scale: opts.scale });
  const [, H, Tq] = q.shape;
  const Tk = k.shape[2];
  const bad = (why: string): never => {
    throw new Error(`blockSparseAttention: ${why} (q [${q.shape}], k [${k.shape}], layout ${layout.heads} heads x ${layout.nBlocks} blocks of ${layout.block})`);
  };
  if (Tq > Tk) bad(`${Tq} queries but only ${Tk} keys (queries are the last Tq positions)`);
  if (layout.heads !== 1 && layout.heads !== H) bad(`the layout has ${layout.heads} heads, q has ${H}`);
  if (Math.ceil(Tk / layout.block) > layout.nBlocks) bad(`${Tk} keys need ${Math.ceil(Tk / layout.block)} blocks`);
  return { scale, causal: opts.causal ?? false, block: layout.block, nBlocks: Math.ceil(Tk / layout.block), layoutHeads: layout.heads };
}

/** The layout's element mask for q, k as a bool tensor [1, heads, Tq, Tk] (true = attend). */
export function blockSparseMask(layout: BlockLayout, Tq: number, Tk: number, causal: boolean, like: Tensor): Tensor {
  const m = layout.elementMask(Tq, Tk, causal);
  return tensor(m, { dtype: 'bool', shape: [1, layout.heads, Tq, Tk], backend: like.backendName });
}

/**
 * Attention of q [B, H, Tq, hd] over k, v [B, Hkv, Tk, hd] (GQA) restricted to the layout's blocks;
 * the queries are the last Tq positions (Tq < Tk: prefill or decode against a KV cache).
 * @example const y = blockSparseAttention(q, k, v, makeLayout(cfg, H, T), { causal: true })
 */
export function blockSparseAttention(q: Tensor, k: Tensor, v: Tensor, layout: BlockLayout, opts: BlockSparseAttentionOptions = {}): Tensor {
  const o = check(q, k, v, layout, opts);
  inputs('blockSparseAttention', q, k, v);
  const kern = backendOf(q).sparseAttention;
  if (!kern)
    return tidy(() => scaledDotProductAttention(q, k, v, { mask: blockSparseMask(layout, q.shape[2], k.shape[2], o.causal, q), scale: o.scale }));
  if (isHalf(q.dtype))
    return tidy(() => to(blockSparseAttention(to(q, 'float32'), to(k, 'float32'), to(v, 'float32'), layout, opts), q.dtype));
  const [B, H, Tq] = q.shape;
  const [qc, kc, vc] = [contiguous(q), contiguous(k), contiguous(v)];
  const int32 = (a: Int32Array): Tensor => tensor(a, { dtype: 'int32', backend: q.backendName });
  const rows = layout.rows(o.nBlocks);
  const [rowPtr, rowIdx] = [int32(rows.ptr), int32(rows.idx)];
  const out = emptyLike(qc, [B, H, Tq, v.shape[3]]);
  const lse = emptyLike(qc, [B, H, Tq], 'float32');
  kern.blockSparseAttention(qc, kc, vc, rowPtr, rowIdx, o, out, lse);
  const temps = [qc, kc, vc, rowPtr, rowIdx, lse];
  if (!needsGrad(q, k, v)) {
    for (const t of temps) t.dispose();
    return out;
  }
  const cols = layout.cols(o.nBlocks);
  const [colPtr, colIdx] = [int32(cols.ptr), int32(cols.idx)];
  const saved = [qc, kc, vc, rowPtr, rowIdx, colPtr, colIdx, out, lse].map(save);
  for (const t of [...temps, colPtr, colIdx]) t.dispose();
  const [qs, ks, vs, rp, ri, cp, ci, os, ls] = saved;
  return record('blockSparseAttention', out, [q, k, v], (g) => {
    const gc = contiguous(g);
    const [dq, dk, dv] = [emptyLike(qs), emptyLike(ks), emptyLike(vs)];
    kern.blockSparseAttentionBackward(qs, ks, vs, rp, ri, cp, ci, os, ls, gc, o, dq, dk, dv);
    return [dq, dk, dv];
  }, saved);
}
