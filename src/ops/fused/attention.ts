// Tiled (flash-style) attention: equals attentionComposite, but never materialises the
// [Tq, Tk] probabilities. Forward keeps the output and the per-row logsumexp; backward
// recomputes p = exp(s - lse) tile by tile (FlashAttention-2, Dao 2023):
//   dv_j += p~_ij do_i,  dp_ij = keep_ij/(1-drop) do_i.v_j,  D_i = do_i.o_i,
//   ds_ij = p_ij (dp_ij - D_i) [* (1 - (s_ij/cap)^2) under soft-capping],
//   dq_i += scale sum_j ds_ij k_j,  dk_j += scale sum_i ds_ij q_i
// The dropout mask is regenerated from the Philox counter saved at forward time.
// float16/bfloat16 q, k, v go to the kernels as they are where the backend declares halfAttention
// (float32 lse and mask); elsewhere they run as float32 copies. Under k.autocast, float32 q, k, v
// are cast to its dtype first (as PyTorch's CPU autocast does for scaled_dot_product_attention), so
// a CPU with bf16 dot products multiplies them in bf16.
import { backendOf } from '../../backend/index.js';
import type { AttentionOpts } from '../../backend/kernels.js';
import type { Generator } from '../../tensor/rng.js';
import { tidy } from '../../tensor/scope.js';
import type { Tensor } from '../../tensor/tensor.js';
import { emptyLike, inputs, needsGrad, record, save } from '../dispatch.js';
import { to, where } from '../elementwise.js';
import type { ResolvedAttention } from '../attention.js';
import { contiguous, expand, narrow, reshape } from '../view.js';
import { type DType, isHalf } from '../../tensor/dtype.js';
import { autocastDtype } from '../../tensor/autocast.js';

/** The additive float32 mask as a 4-d view [B|1, H|1, Tq, Tk] (stride 0 where broadcast). */
function maskView(mask: Tensor, dtype: DType, B: number, H: number, Tq: number, Tk: number): Tensor {
  return tidy(() => {
    const add = mask.dtype === 'bool' ? where(mask, 0, -Infinity) : mask.dtype === dtype ? mask : to(mask, dtype);
    const m4 = add.ndim < 4 ? reshape(add, [...Array(4 - add.ndim).fill(1), ...add.shape]) : add;
    return expand(m4, [m4.shape[0] === 1 ? 1 : B, m4.shape[1] === 1 ? 1 : H, Tq, Tk]);
  });
}

/** [B, H, T, d] with d contiguous values per row and rows d apart within a head (heads anywhere). */
const rowsWithinHeads = (t: Tensor): boolean =>
  (t.shape[3] <= 1 || t.strides[3] === 1) && (t.shape[2] <= 1 || t.strides[2] === t.shape[3]) && t.strides[0] >= 0 && t.strides[1] >= 0;

export function attentionFused(q: Tensor, k: Tensor, v: Tensor, r: ResolvedAttention, gen: Generator): Tensor {
  inputs('scaledDotProductAttention', q, k, v, r.mask);
  if (q.dtype !== k.dtype || q.dtype !== v.dtype) throw new Error(`scaledDotProductAttention: q, k, v dtypes differ (${q.dtype}, ${k.dtype}, ${v.dtype})`);
  const ac = autocastDtype();
  if (ac && q.dtype === 'float32' && k.dtype === 'float32' && v.dtype === 'float32' && backendOf(q).halfAttention)
    return tidy(() => attentionFused(to(q, ac), to(k, ac), to(v, ac), r, gen));
  const half = isHalf(q.dtype);
  if (half && !backendOf(q).halfAttention)
    return tidy(() => to(attentionFused(to(q, 'float32'), to(k, 'float32'), to(v, 'float32'), r, gen), q.dtype));
  // 16-bit q, k, v go to the kernel as they are; its statistics and the mask stay float32
  const stats: DType = half ? 'float32' : q.dtype;
  const [B, H, Tq] = q.shape;
  const Tk = k.shape[2];
  // without a backward, k and v (a KV cache's prefix, heads maxLen rows apart) go in without a copy where the kernel takes them
  const strided = !needsGrad(q, k, v) && backendOf(q).attentionStridedKv === true;
  const kvOperand = (t: Tensor): Tensor => (strided && rowsWithinHeads(t) ? narrow(t, 0, 0, t.shape[0]) : contiguous(t));
  const [qc, kc, vc] = [contiguous(q), kvOperand(k), kvOperand(v)];
  const mask = r.mask ? maskView(r.mask, stats, B, H, Tq, Tk) : null;
  const opts: AttentionOpts = {
    scale: r.scale, causal: r.causal, window: r.window, softcap: r.softcap, dropout: r.dropout,
    seed: gen.seed, counter: r.dropout > 0 ? gen.next('uniform', B * H * Tq * Tk) : 0,
  };
  const out = emptyLike(qc, [B, H, Tq, v.shape[3]]);
  const lse = emptyLike(qc, [B, H, Tq], stats);
  const kern = backendOf(qc).kernels;
  kern.attention(qc, kc, vc, mask, opts, out, lse);
  const temps = [qc, kc, vc, mask, lse];
  if (!needsGrad(q, k, v)) {
    for (const t of temps) t?.dispose();
    return out;
  }
  const saved = [save(qc), save(kc), save(vc), save(out), save(lse), ...(mask ? [save(mask)] : [])];
  const [qs, ks, vs, os, ls, ms] = saved;
  for (const t of temps) t?.dispose();
  return record('scaledDotProductAttention', out, [q, k, v], (g) => {
    const gc = contiguous(g);
    const [dq, dk, dv] = [emptyLike(qs), emptyLike(ks), emptyLike(vs)];
    kern.attentionBackward(qs, ks, vs, ms ?? null, os, ls, gc, opts, dq, dk, dv);
    return [dq, dk, dv];
  }, saved);
}
