// The CPU backend's block-sparse attention kernels: one packed call each into
// native/block_sparse_attention.cc, in the order its read_problem() reads.
import type { BlockSparseOpts, SparseAttentionKernels, View } from '../kernels.js';
import type { NativeView, Packer } from './native.js';

export function makeSparseAttention(p: Packer, nv: (v: View) => NativeView): SparseAttentionKernels {
  const opts = (o: BlockSparseOpts): Packer => p.num(o.scale).num(o.causal ? 1 : 0).num(o.block).num(o.nBlocks).num(o.layoutHeads);
  return {
    blockSparseAttention: (q, k, v, rowPtr, rowIdx, o, out, lse) => {
      p.view(nv(q)).view(nv(k)).view(nv(v)).view(nv(rowPtr)).view(nv(rowIdx));
      opts(o).view(nv(out)).view(nv(lse)).call('block_sparse_attention');
    },
    blockSparseAttentionBackward: (q, k, v, rowPtr, rowIdx, colPtr, colIdx, out, lse, dout, o, dq, dk, dv) => {
      p.view(nv(q)).view(nv(k)).view(nv(v)).view(nv(rowPtr)).view(nv(rowIdx)).view(nv(colPtr)).view(nv(colIdx));
      opts(o).view(nv(out)).view(nv(lse)).view(nv(dout)).view(nv(dq)).view(nv(dk)).view(nv(dv)).call('block_sparse_attention_backward');
    },
  };
}
