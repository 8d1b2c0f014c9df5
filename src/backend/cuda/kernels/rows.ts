// What the CUDA row kernels (softmax, norms, cross-entropy; native/cuda/kernels/rows.cuh) share on
// the TypeScript side: the argument checks of native/nn.cc, with its messages and kernel names
// (float32 unless a kernel also takes bfloat16/float16), and the launch shape: a row per warp for
// rows of at most WARP_MAX_D elements, else a row per block.
import type { DType } from '../../../tensor/dtype.js';
import type { View } from '../../kernels.js';
import { dims } from '../checks.js';
import { cudaContext } from '../context.js';

/** Rows up to this long run a row per warp (each lane then holds at most 32 elements of it). */
export const WARP_MAX_D = 1024;

const F32: readonly DType[] = ['float32'];

const fail = (kernel: string, why: string): never => {
  throw new Error(`cuda ${kernel}: ${why}`);
};

/** The storage types of the row kernels that take half operands (computed in float32). */
export const ROW_DTYPES: readonly DType[] = ['float32', 'bfloat16', 'float16'];

/** One of `dtypes` (float32 by default) and contiguous (the layout every row kernel reads). */
export function needF32(kernel: string, what: string, v: View, dtypes: readonly DType[] = F32): void {
  if (!dtypes.includes(v.dtype)) fail(kernel, `${what} must be ${dtypes.join(' or ')}, got ${v.dtype} ${dims(v.layout.shape)}`);
  if (!v.layout.isContiguous()) fail(kernel, `${what} ${dims(v.layout.shape)} must be contiguous`);
}

/** Contiguous, with the shape of `like` and its dtype (float32 unless `dtypes` allows others). */
export function needSame(kernel: string, what: string, v: View, like: View, dtypes: readonly DType[] = F32): void {
  needF32(kernel, what, v, dtypes);
  if (v.dtype !== like.dtype) fail(kernel, `${what} has dtype ${v.dtype}, the input ${like.dtype}`);
  const [a, b] = [v.layout.shape, like.layout.shape];
  if (a.length !== b.length || a.some((s, i) => s !== b[i]))
    fail(kernel, `${what} ${dims(a)} must have the input's shape ${dims(b)}`);
}

/** A contiguous vector of n elements (rstd, mean, weights, per-row losses), float32 unless `dtypes` says. */
export function needVec(kernel: string, what: string, v: View, n: number, dtypes: readonly DType[] = F32): void {
  needF32(kernel, what, v, dtypes);
  if (v.layout.numel !== n) fail(kernel, `${what} ${dims(v.layout.shape)} must have ${n} elements`);
}

/** Rows x D of a contiguous input (float32 unless `dtypes` says) with at least minNdim dims (a scalar is one row of 1). */
export function rowsOf(kernel: string, x: View, minNdim: number, dtypes: readonly DType[] = F32): { rows: number; D: number } {
  needF32(kernel, 'input', x, dtypes);
  const s = x.layout.shape;
  if (s.length < minNdim) fail(kernel, `input ${dims(s)} needs at least ${minNdim} dim(s)`);
  const D = s.length ? s[s.length - 1] : 1;
  return { rows: s.slice(0, -1).reduce((a, b) => a * b, 1), D };
}

export interface RowLaunch {
  /** the kernel-name form: `${name}_warp_f32` or `${name}_block_f32` */
  form: 'warp' | 'block';
  grid: number;
  block: number;
}

/**
 * A row per warp (warpsPerBlock rows per block) for short rows, else a row per block of 256-1024
 * threads; at most `blocksPerSm` blocks per multiprocessor (the kernels stride over the rows).
 */
export function rowLaunch(rows: number, D: number, opts: { warpsPerBlock?: number; blocksPerSm?: number } = {}): RowLaunch {
  const { warpsPerBlock = 8, blocksPerSm = 16 } = opts;
  const ctx = cudaContext();
  const cap = ctx.emulated ? 64 : ctx.device.smCount * blocksPerSm;
  if (D <= WARP_MAX_D) return { form: 'warp', grid: Math.max(1, Math.min(Math.ceil(rows / warpsPerBlock), cap)), block: 32 * warpsPerBlock };
  const block = D <= 4096 ? 256 : D <= 16384 ? 512 : 1024;
  return { form: 'block', grid: Math.max(1, Math.min(rows, cap)), block };
}
