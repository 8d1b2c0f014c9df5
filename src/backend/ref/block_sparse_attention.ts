// Reference block-sparse attention: the dense formula of ./attention.ts restricted to the keys the
// layout shows each query row, one row at a time in float64 (the oracle of native/block_sparse_attention.cc).
//   visible(i) = { j : block(j) in the layout row of block((i + Tk - Tq)), and j <= i + Tk - Tq when causal }
//   p = softmax over visible(i) of scale q_i.k_j, out_i = sum_j p_j v_j, lse_i = logsumexp (-inf when empty)
// Backward: D = do.out, ds_j = p_j (do.v_j - D), dq_i += scale ds_j k_j, dk_j += scale ds_j q_i, dv_j += p_j do_i.
import type { BlockSparseOpts, SparseAttentionKernels, View } from '../kernels.js';
import { load, store } from './storage.js';

interface Problem {
  B: number; H: number; Hkv: number; Tq: number; Tk: number; hd: number; hdv: number;
  q: Float64Array; k: Float64Array; v: Float64Array; ptr: Float64Array; idx: Float64Array; o: BlockSparseOpts;
}

function problem(q: View, k: View, v: View, rowPtr: View, rowIdx: View, o: BlockSparseOpts): Problem {
  const [B, H, Tq, hd] = q.layout.shape;
  const [, Hkv, Tk] = k.layout.shape;
  return { B, H, Hkv, Tq, Tk, hd, hdv: v.layout.shape[3], q: load(q), k: load(k), v: load(v), ptr: load(rowPtr), idx: load(rowIdx), o };
}

/** Keys query row i of head h sees, ascending. */
function visible(p: Problem, h: number, i: number): number[] {
  const { block, nBlocks, layoutHeads, causal } = p.o;
  const pos = i + p.Tk - p.Tq;
  const row = (layoutHeads === 1 ? 0 : h) * nBlocks + Math.floor(pos / block);
  const keys: number[] = [];
  for (let e = p.ptr[row]; e < p.ptr[row + 1]; e++)
    for (let j = p.idx[e] * block; j < Math.min((p.idx[e] + 1) * block, p.Tk); j++) if (!causal || j <= pos) keys.push(j);
  return keys;
}

/** Row (b, h, i): its visible keys, their probabilities and the logsumexp. */
function rowProbs(p: Problem, b: number, h: number, i: number) {
  const keys = visible(p, h, i);
  const g = Math.floor(h / (p.H / p.Hkv));
  const qo = ((b * p.H + h) * p.Tq + i) * p.hd;
  const s = keys.map((j) => {
    let dot = 0;
    for (let c = 0; c < p.hd; c++) dot += p.q[qo + c] * p.k[((b * p.Hkv + g) * p.Tk + j) * p.hd + c];
    return p.o.scale * dot;
  });
  const m = Math.max(...s);
  const lse = keys.length === 0 ? -Infinity : m + Math.log(s.reduce((acc, z) => acc + Math.exp(z - m), 0));
  return { keys, g, qo, probs: s.map((z) => Math.exp(z - lse)), lse };
}

function forward(q: View, k: View, v: View, rowPtr: View, rowIdx: View, o: BlockSparseOpts, out: View, lse: View): void {
  const p = problem(q, k, v, rowPtr, rowIdx, o);
  const res = new Float64Array(p.B * p.H * p.Tq * p.hdv);
  const l = new Float64Array(p.B * p.H * p.Tq);
  for (let b = 0; b < p.B; b++)
    for (let h = 0; h < p.H; h++)
      for (let i = 0; i < p.Tq; i++) {
        const row = (b * p.H + h) * p.Tq + i;
        const { keys, g, probs, lse: z } = rowProbs(p, b, h, i);
        l[row] = z;
        keys.forEach((j, e) => {
          for (let c = 0; c < p.hdv; c++) res[row * p.hdv + c] += probs[e] * p.v[((b * p.Hkv + g) * p.Tk + j) * p.hdv + c];
        });
      }
  store(out, res);
  store(lse, l);
}

const backward: SparseAttentionKernels['blockSparseAttentionBackward'] = (q, k, v, rowPtr, rowIdx, _cp, _ci, out, _lse, dout, o, dq, dk, dv) => {
  const p = problem(q, k, v, rowPtr, rowIdx, o);
  const [ov, gv] = [load(out), load(dout)];
  const [dqv, dkv, dvv] = [new Float64Array(p.q.length), new Float64Array(p.k.length), new Float64Array(p.v.length)];
  for (let b = 0; b < p.B; b++)
    for (let h = 0; h < p.H; h++)
      for (let i = 0; i < p.Tq; i++) {
        const row = (b * p.H + h) * p.Tq + i;
        const { keys, g, qo, probs } = rowProbs(p, b, h, i);
        let D = 0;
        for (let c = 0; c < p.hdv; c++) D += gv[row * p.hdv + c] * ov[row * p.hdv + c];
        keys.forEach((j, e) => {
          const kj = (b * p.Hkv + g) * p.Tk + j;
          let dp = 0;
          for (let c = 0; c < p.hdv; c++) {
            dp += gv[row * p.hdv + c] * p.v[kj * p.hdv + c];
            dvv[kj * p.hdv + c] += probs[e] * gv[row * p.hdv + c];
          }
          const ds = p.o.scale * probs[e] * (dp - D);
          for (let c = 0; c < p.hd; c++) {
            dqv[qo + c] += ds * p.k[kj * p.hd + c];
            dkv[kj * p.hd + c] += ds * p.q[qo + c];
          }
        });
      }
  store(dq, dqv);
  store(dk, dkv);
  store(dv, dvv);
};

export const sparseAttention: SparseAttentionKernels = { blockSparseAttention: forward, blockSparseAttentionBackward: backward };
