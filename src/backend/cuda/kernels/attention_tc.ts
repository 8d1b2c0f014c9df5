// Flash attention on tensor cores for bfloat16 / float16 q, k, v (native/cuda/kernels/attention_tc.cu,
// attention_tc_backward.cu, attention_tc_dq.cu; mma.m16n8k16, so compute capability 8.0 or newer):
// out, dq, dk, dv in the input type, lse float32. Takes head dims that are multiples of 8 (rows move
// in 16-byte pieces) on 16-byte aligned tensors; attention.ts sends anything else through float32
// copies. dq is summed with float32 atomics inside the dk/dv pass unless KESTREL_DETERMINISTIC=1.
import type { AttentionOpts, View } from '../../kernels.js';
import { cudaContext } from '../context.js';
import { type CudaFunction, cudaKernel } from '../modules.js';
import { type Params, devicePointer, gridFor, launch, newParams } from '../launch.js';
import { scratchStorage } from '../storage.js';
import { type AttnProblem, MAX_GRID_YZ, dims, fail, headSplit, problemParams } from './attention_args.js';

const THREADS = 128;
const DQ_BQ = 64; // queries per block of the deterministic dq pass (4 warps x 16)
const HEAD_DIMS = [32, 64, 128, 256] as const;
type HeadDim = (typeof HEAD_DIMS)[number];

/**
 * The .cu files' instantiations. Forward: keys per tile `bk`, m-tiles of 16 rows per warp `mt`
 * (4 warps: 64 mt queries per block). dk/dv: keys per block 16 `kw`, queries per step `bq`, buffers
 * `nb` of each step's q / dout. dq: keys per tile `bk`, buffers `nb`. The `_full` kernels (masks,
 * soft-capping, dropout) have their own shapes.
 */
interface Tiles {
  fwd: { bk: number; mt: number };
  kv: { kw: number; bq: number; nb: number };
  dq: { bk: number; nb: number };
}
const TILES: Record<'fast' | 'full', Record<HeadDim, Tiles>> = {
  fast: {
    32: { fwd: { bk: 64, mt: 2 }, kv: { kw: 4, bq: 64, nb: 2 }, dq: { bk: 64, nb: 2 } },
    64: { fwd: { bk: 64, mt: 2 }, kv: { kw: 4, bq: 64, nb: 2 }, dq: { bk: 64, nb: 2 } },
    128: { fwd: { bk: 32, mt: 2 }, kv: { kw: 4, bq: 32, nb: 2 }, dq: { bk: 32, nb: 2 } },
    256: { fwd: { bk: 16, mt: 1 }, kv: { kw: 2, bq: 32, nb: 1 }, dq: { bk: 16, nb: 1 } },
  },
  full: {
    32: { fwd: { bk: 64, mt: 1 }, kv: { kw: 4, bq: 64, nb: 2 }, dq: { bk: 64, nb: 2 } },
    64: { fwd: { bk: 64, mt: 1 }, kv: { kw: 4, bq: 64, nb: 2 }, dq: { bk: 64, nb: 2 } },
    128: { fwd: { bk: 64, mt: 1 }, kv: { kw: 4, bq: 32, nb: 2 }, dq: { bk: 32, nb: 2 } },
    256: { fwd: { bk: 16, mt: 1 }, kv: { kw: 1, bq: 64, nb: 1 }, dq: { bk: 16, nb: 1 } },
  },
};

/** Dynamic shared memory of each kernel, as the SMEM constants of FwdTc, BwdKV and BwdQ (rows padded by 8 values). */
const smemForward = (d: HeadDim, t: Tiles): number => (64 * t.fwd.mt + 4 * t.fwd.bk) * (d + 8) * 2;
const smemDkdv = (d: HeadDim, t: Tiles): number => {
  const { kw, bq, nb } = t.kv;
  const bk = 16 * kw;
  return 8 * nb * bq + (2 * bk * (d + 8) + 2 * nb * bq * (d + 8) + 2 * bk * (bq + 8)) * 2;
};
const smemDq = (d: HeadDim, t: Tiles): number => 8 * DQ_BQ + (2 * DQ_BQ + 2 * t.dq.nb * t.dq.bk) * (d + 8) * 2;

const headDim = (p: AttnProblem): HeadDim => HEAD_DIMS.find((d) => d >= Math.max(p.hd, p.hdv)) ?? 256;
const typeName = (p: AttnProblem): string => (p.dtype === 'bfloat16' ? 'bf16' : 'f16');
/** Whether the problem needs the _full kernels (a mask, soft-capping or dropout). */
const isFull = (mask: View | null, o: AttentionOpts): boolean => mask !== null || o.softcap > 0 || o.dropout > 0;
/**
 * The forward's kernel: the _full one also for at most 64 queries (decoding, short prefills), whose
 * single m-tiles per warp give all 4 warps rows to work on.
 */
const fullForward = (p: AttnProblem, mask: View | null, o: AttentionOpts): boolean => isFull(mask, o) || p.Tq <= 64;
const tilesOf = (p: AttnProblem, full: boolean): Tiles => TILES[full ? 'full' : 'fast'][headDim(p)];
/** The suffix of the kernels' names: _d<head-dim bound>, then _full where it applies. */
const kernelSuffix = (p: AttnProblem, full: boolean): string => `${typeName(p)}_d${headDim(p)}${full ? '_full' : ''}`;

/** dq through float32 atomics in the dk/dv pass (the default; its last bits vary run to run) or a separate deterministic pass. */
export const deterministicAttention = (): boolean => process.env.KESTREL_DETERMINISTIC === '1';

/**
 * Whether the tensor-core kernels take this problem: 16-bit, head dims multiples of 8, 16-byte aligned
 * tensors, sm_80+, shared memory to fit, and sequences of at most 65535 tiles (the grids' z: heads
 * and batch are x and y, so that the heavy tiles of every head start first).
 */
export function tcSupports(p: AttnProblem, views: View[], mask: View | null, opts: AttentionOpts, backward: boolean): boolean {
  const ctx = cudaContext();
  if (p.dtype === 'float32' || ctx.device.ccMajor < 8 || p.hd % 8 !== 0 || p.hdv % 8 !== 0) return false;
  if (Math.ceil(p.Tq / 64) > MAX_GRID_YZ || Math.ceil(p.Tk / 16) > MAX_GRID_YZ) return false;
  const d = headDim(p);
  const smem = backward
    ? Math.max(smemDkdv(d, tilesOf(p, isFull(mask, opts))), deterministicAttention() ? smemDq(d, tilesOf(p, isFull(mask, opts))) : 0)
    : smemForward(d, tilesOf(p, fullForward(p, mask, opts)));
  if (smem > ctx.device.smemOptin) return false;
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
  const full = fullForward(p, mask, opts);
  const t = tilesOf(p, full);
  const fn = cudaKernel('attention_tc', `attention_tc_forward_${kernelSuffix(p, full)}`);
  const params = problemParams(p, q, k, v, mask, opts).view_(out, 'out').view_(lse, 'lse');
  launchSmem(fn, params, [p.H, p.B, Math.ceil(p.Tq / (64 * t.fwd.mt))], smemForward(headDim(p), t));
}

export function tcBackward(
  p: AttnProblem, q: View, k: View, v: View, mask: View | null, out: View, lse: View, dout: View, opts: AttentionOpts,
  dq: View, dk: View, dv: View,
): void {
  const kernel = 'attention_backward';
  const mod = 'attention_tc_backward';
  const [d, t, full] = [headDim(p), typeName(p), isFull(mask, opts)];
  const tiles = tilesOf(p, full);
  const suffix = kernelSuffix(p, full);
  const addon = cudaContext().addon;
  const rows = p.B * p.H * p.Tq;
  const nkt = Math.ceil(p.Tk / (16 * tiles.kv.kw));
  const nqt = Math.ceil(p.Tq / DQ_BQ);
  const split = headSplit(p, p.B * p.Hkv * nkt);
  if (p.Hkv * split > MAX_GRID_YZ) fail(kernel, `at most ${MAX_GRID_YZ} kv heads: ${dims(p)}`);
  const deterministic = deterministicAttention();
  // (lse in base 2, D) per query row
  const stats = scratchStorage(addon, 'float32', Math.max(2, 2 * rows));
  // per-share float32 partials of dk and dv, summed after in a fixed order
  const part = split > 1 ? [p.hd, p.hdv].map((w) => scratchStorage(addon, 'float32', p.B * p.Hkv * split * p.Tk * w)) : null;
  // float32 dq sums the dk/dv pass adds into (zeroed)
  const dqAcc = deterministic ? null : scratchStorage(addon, 'float32', Math.max(1, rows * p.hd), true);
  try {
    const rd = newParams().view_(out, 'out').view_(dout, 'dout').view_(lse, 'lse').i64(rows).i64(p.hdv).ptr(stats.ptr);
    launch(cudaKernel(mod, `attention_tc_backward_rowdot_${t}`), rd, { grid: gridFor(rows * 32), block: 256 });

    const kv = problemParams(p, q, k, v, mask, opts).view_(dout, 'dout').ptr(stats.ptr).i32(split).i32(part ? 1 : 0);
    if (part) kv.ptr(part[0].ptr).ptr(part[1].ptr);
    else kv.view_(dk, 'dk').view_(dv, 'dv');
    kv.ptr(dqAcc ? dqAcc.ptr : 0);
    launchSmem(cudaKernel(mod, `attention_tc_backward_dkdv_${suffix}`), kv, [p.Hkv * split, p.B, nkt], smemDkdv(d, tiles));
    if (part) {
      const sum = cudaKernel(mod, `attention_tc_backward_sum_heads_${t}`);
      for (const [buf, dst, w] of [[part[0], dk, p.hd], [part[1], dv, p.hdv]] as const) {
        const n = p.B * p.Hkv * p.Tk * w;
        launch(sum, newParams().ptr(buf.ptr).i32(split).i64(p.B * p.Hkv).i64(p.Tk * w).view_(dst, 'dk/dv'), { grid: gridFor(n), block: 256 });
      }
    }

    if (dqAcc) {
      const n = rows * p.hd;
      const cv = newParams().ptr(dqAcc.ptr).i64(n).f32(opts.scale).view_(dq, 'dq');
      launch(cudaKernel(mod, `attention_tc_backward_dq_convert_${t}`), cv, { grid: gridFor(n), block: 256 });
    } else {
      const dqp = problemParams(p, q, k, v, mask, opts).view_(dout, 'dout').ptr(stats.ptr).view_(dq, 'dq');
      launchSmem(cudaKernel('attention_tc_dq', `attention_tc_backward_dq_${suffix}`), dqp, [p.H, p.B, nqt], smemDq(d, tiles));
    }
  } finally {
    stats.release();
    dqAcc?.release();
    for (const s of part ?? []) s.release();
  }
}
