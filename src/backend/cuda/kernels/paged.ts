// The paged KV-cache kernels on the GPU (native/cuda/kernels/paged.cu), so that the serving engine
// batches continuously on CUDA as it does on the CPU. The shape and dtype checks and their messages
// are native/paged_attention.cc's; index values (slots, sequences, positions, blocks) are checked
// on the device and a bad one is raised at the next host read (../index_errors.ts).
import type { DType } from '../../../tensor/dtype.js';
import type { PagedKernels, View } from '../../kernels.js';
import { dims } from '../checks.js';
import { afterIndexLaunch, indexErrorSlot, indexOpCode } from '../index_errors.js';
import { devicePointer, gridFor, launch, newParams } from '../launch.js';
import { cudaKernel } from '../modules.js';

/** The largest head dim the attention kernel's shared buffers hold (paged.cu's PA_DMAX). */
const MAX_HEAD_DIM = 256;
/** Threads per query head: paged.cu's PA_WARPS warps. */
const THREADS = 128;

function needContiguous(kernel: string, v: View, dtype: DType, ndim: number, name: string): void {
  if (v.dtype !== dtype || v.layout.ndim !== ndim || !v.layout.isContiguous())
    throw new Error(`${kernel}: ${name} must be a contiguous ${dtype} tensor of ${ndim} dims, got ${v.dtype} ${dims(v.layout.shape)}`);
}

export const pagedKernels: PagedKernels = {
  pagedWrite(src, slots, pool) {
    const K = 'paged_write';
    needContiguous(K, pool, 'float32', 3, 'pool');
    needContiguous(K, src, 'float32', 3, 'src');
    needContiguous(K, slots, 'int64', 1, 'slots');
    const [S, Hkv, hd] = pool.layout.shape;
    const N = src.layout.shape[0];
    if (src.layout.shape[1] !== Hkv || src.layout.shape[2] !== hd || slots.layout.shape[0] !== N)
      throw new Error(`${K}: src ${dims(src.layout.shape)} and slots ${dims(slots.layout.shape)} do not fit the pool ${dims(pool.layout.shape)}`);
    const row = Hkv * hd;
    if (N * row === 0) return;
    const err = indexErrorSlot(slots.layout.shape);
    const p = newParams().view_(src, 'src').view_(slots, 'slots').view_(pool, 'pool').i64(N).i64(row).i64(S)
      .ptr(err.ptr).i64(indexOpCode('paged_write')).i64(err.id);
    launch(cudaKernel('paged', 'paged_write_f32'), p, { grid: gridFor(N * row), block: 256 });
    afterIndexLaunch();
  },

  pagedAttention(q, k, v, table, seq, pos, o, out) {
    const K = 'paged_attention';
    needContiguous(K, q, 'float32', 3, 'q');
    needContiguous(K, k, 'float32', 3, 'k_pool');
    needContiguous(K, v, 'float32', 3, 'v_pool');
    needContiguous(K, out, 'float32', 3, 'out');
    needContiguous(K, table, 'int32', 2, 'block table');
    needContiguous(K, seq, 'int32', 1, 'seq');
    needContiguous(K, pos, 'int32', 1, 'pos');
    const [N, H, hd] = q.layout.shape;
    const [S, Hkv] = k.layout.shape;
    const [numSeqs, maxBlocks] = table.layout.shape;
    const [vs, os] = [v.layout.shape, out.layout.shape];
    if (k.layout.shape[2] !== hd || vs[0] !== S || vs[1] !== Hkv || vs[2] !== hd)
      throw new Error(`${K}: pools k ${dims(k.layout.shape)} and v ${dims(vs)} must both be [S, Hkv, ${hd}]`);
    if (Hkv <= 0 || H % Hkv !== 0) throw new Error(`${K}: ${H} query heads are not a multiple of ${Hkv} kv heads`);
    if (os[0] !== N || os[1] !== H || os[2] !== hd) throw new Error(`${K}: out ${dims(os)} must be q's shape ${dims(q.layout.shape)}`);
    if (seq.layout.shape[0] !== N || pos.layout.shape[0] !== N)
      throw new Error(`${K}: seq ${dims(seq.layout.shape)} and pos ${dims(pos.layout.shape)} must have one entry per query`);
    if (!Number.isInteger(o.blockSize) || o.blockSize <= 0 || S % o.blockSize !== 0)
      throw new Error(`${K}: block size ${o.blockSize} does not divide the pool's ${S} slots`);
    if (!Number.isInteger(o.window) || o.window < 0) throw new Error(`${K}: window must be >= 0, got ${o.window}`);
    if (hd > MAX_HEAD_DIM) throw new Error(`${K}: head dim ${hd} is above the cuda kernel's ${MAX_HEAD_DIM}`);
    if (N * H * hd === 0) return;
    const err = indexErrorSlot(pos.layout.shape);
    const p = newParams().view_(q, 'q').view_(k, 'k_pool').view_(v, 'v_pool').view_(table, 'block table').view_(seq, 'seq').view_(pos, 'pos')
      .i64(H).i64(Hkv).i64(hd).i64(S).i64(numSeqs).i64(maxBlocks).i64(o.blockSize).f32(o.scale).i64(o.window).f32(o.softcap)
      .i32(hd % 4 === 0 && devicePointer(k, 'k_pool') % 16 === 0 ? 1 : 0) // every key row 16-byte aligned: vector loads
      .view_(out, 'out').ptr(err.ptr).i64(indexOpCode('paged_attention_sequence')).i64(err.id);
    launch(cudaKernel('paged', 'paged_attention_f32'), p, { grid: N * H, block: THREADS });
    afterIndexLaunch();
  },
};
