// Flash attention on tensor cores for bfloat16 / float16 q, k, v (native/cuda/kernels/attention_tc.cu
// and attention_tc_backward.cu; mma.m16n8k16, so compute capability 8.0 or newer): out, dq, dk, dv in
// the input type, lse float32. Takes head dims that are multiples of 8 (rows move in 16-byte
// pieces) on 16-byte aligned tensors; attention.ts sends anything else through float32 copies.
import type { AttentionOpts, View } from '../../kernels.js';
import { cudaContext } from '../context.js';
import { type CudaFunction, cudaKernel } from '../modules.js';
import { type Params, devicePointer, gridFor, launch, newParams } from '../launch.js';
import { scratchStorage } from '../storage.js';
import { type AttnProblem, MAX_GRID_YZ, dims, fail, headSplit, problemParams } from './attention_args.js';

const THREADS = 128;
const BQ = 64; // queries per block of the forward and the dq pass (4 warps x 16)
const HEAD_DIMS = [32, 64, 128, 256] as const;
type HeadDim = (typeof HEAD_DIMS)[number];
/** The .cu files' instantiations: forward keys per tile; dkdv keys per block (16 kw) and queries per tile; dq keys per tile. */
const TILES: Record<HeadDim, { fwdBk: number; kvKw: number; kvBq: number; dqBk: number }> = {
  32: { fwdBk: 64, kvKw: 4, kvBq: 64, dqBk: 64 },
  64: { fwdBk: 64, kvKw: 4, kvBq: 64, dqBk: 64 },
  128: { fwdBk: 64, kvKw: 4, kvBq: 32, dqBk: 64 },
  256: { fwdBk: 32, kvKw: 2, kvBq: 32, dqBk: 16 },
};

/** Dynamic shared memory of each kernel, as the SMEM constants of FwdTc, BwdKV and BwdQ (rows padded by 8 values). */
const smemForward = (d: HeadDim): number => (BQ + 2 * TILES[d].fwdBk) * (d + 8) * 2;
const smemDkdv = (d: HeadDim): number => {
  const { kvKw, kvBq } = TILES[d];
  const bk = 16 * kvKw;
  return 2 * kvBq * 4 + ((2 * bk + 2 * kvBq) * (d + 8) + 2 * bk * (kvBq + 8)) * 2;
};
const smemDq = (d: HeadDim): number => 2 * BQ * 4 + (2 * BQ + 2 * TILES[d].dqBk) * (d + 8) * 2;

const headDim = (p: AttnProblem): HeadDim => HEAD_DIMS.find((d) => d >= Math.max(p.hd, p.hdv)) ?? 256;
const typeName = (p: AttnProblem): string => (p.dtype === 'bfloat16' ? 'bf16' : 'f16');

/** Whether the tensor-core kernels take this problem: 16-bit, head dims multiples of 8, 16-byte aligned tensors, sm_80+. */
export function tcSupports(p: AttnProblem, views: View[]): boolean {
  const ctx = cudaContext();
  if (p.dtype === 'float32' || ctx.device.ccMajor < 8 || p.hd % 8 !== 0 || p.hdv % 8 !== 0) return false;
  const d = headDim(p);
  if (Math.max(smemForward(d), smemDkdv(d), smemDq(d)) > ctx.device.smemOptin) return false;
  return views.every((v) => v.layout.numel === 0 || devicePointer(v) % 16 === 0);
}

const smemSet = new Set<number>();

/** Launches with `smem` bytes of dynamic shared memory (opting the kernel in above the default 48 KB once). */
function launchSmem(fn: CudaFunction, p: Params, grid: [number, number, number], smem: number): void {
  if (smem > 48 * 1024 && !smemSet.has(fn.handle)) {
    cudaContext().addon.cudaSetSmem(fn.handle, smem);
    smemSet.add(fn.handle);
  }
  launch(fn, p, { grid, block: THREADS, smem });
}

export function tcForward(p: AttnProblem, q: View, k: View, v: View, mask: View | null, opts: AttentionOpts, out: View, lse: View): void {
  const d = headDim(p);
  const fn = cudaKernel('attention_tc', `attention_tc_forward_${typeName(p)}_d${d}`);
  const params = problemParams(p, q, k, v, mask, opts).view_(out, 'out').view_(lse, 'lse');
  launchSmem(fn, params, [Math.ceil(p.Tq / BQ), p.H, p.B], smemForward(d));
}

export function tcBackward(
  p: AttnProblem, q: View, k: View, v: View, mask: View | null, out: View, lse: View, dout: View, opts: AttentionOpts,
  dq: View, dk: View, dv: View,
): void {
  const kernel = 'attention_backward';
  const [d, t] = [headDim(p), typeName(p)];
  const mod = 'attention_tc_backward';
  const addon = cudaContext().addon;
  const rows = p.B * p.H * p.Tq;
  const bk = 16 * TILES[d].kvKw;
  const nkt = Math.ceil(p.Tk / bk);
  const split = headSplit(p, p.B * p.Hkv * nkt);
  if (p.Hkv * split > MAX_GRID_YZ) fail(kernel, `at most ${MAX_GRID_YZ} kv heads: ${dims(p)}`);
  const D = scratchStorage(addon, 'float32', Math.max(1, rows));
  // per-share float32 partials of dk and dv, summed after in a fixed order
  const part = split > 1 ? [p.hd, p.hdv].map((w) => scratchStorage(addon, 'float32', p.B * p.Hkv * split * p.Tk * w)) : null;
  try {
    const rd = newParams().view_(out, 'out').view_(dout, 'dout').i64(rows).i64(p.hdv).ptr(D.ptr);
    launch(cudaKernel(mod, `attention_tc_backward_rowdot_${t}`), rd, { grid: gridFor(rows * 32), block: 256 });

    const kv = problemParams(p, q, k, v, mask, opts).view_(dout, 'dout').view_(lse, 'lse').ptr(D.ptr).i32(split).i32(part ? 1 : 0);
    if (part) kv.ptr(part[0].ptr).ptr(part[1].ptr);
    else kv.view_(dk, 'dk').view_(dv, 'dv');
    launchSmem(cudaKernel(mod, `attention_tc_backward_dkdv_${t}_d${d}`), kv, [nkt, p.Hkv * split, p.B], smemDkdv(d));
    if (part) {
      const sum = cudaKernel(mod, `attention_tc_backward_sum_heads_${t}`);
      for (const [buf, dst, w] of [[part[0], dk, p.hd], [part[1], dv, p.hdv]] as const) {
        const n = p.B * p.Hkv * p.Tk * w;
        launch(sum, newParams().ptr(buf.ptr).i32(split).i64(p.B * p.Hkv).i64(p.Tk * w).view_(dst, 'dk/dv'), { grid: gridFor(n), block: 256 });
      }
    }

    const dqp = problemParams(p, q, k, v, mask, opts).view_(dout, 'dout').view_(lse, 'lse').ptr(D.ptr).view_(dq, 'dq');
    launchSmem(cudaKernel(mod, `attention_tc_backward_dq_${t}_d${d}`), dqp, [Math.ceil(p.Tq / BQ), p.H, p.B], smemDq(d));
  } finally {
    D.release();
    for (const s of part ?? []) s.release();
  }
}
