// RMSNorm and LayerNorm on the GPU (native/cuda/kernels/norms.cu), checked as native/nn.cc checks
// them; RMSNorm also takes a bfloat16/float16 x (Backend.halfElementwise) with a weight of x's
// dtype or float32, rstd float32. The weight/bias gradients are summed over rows without atomics:
// the backward kernel leaves one [D] partial per block in a float32 scratch buffer and column_sums
// adds them in a fixed order (with a single block, a float32 gradient is written by the kernel itself).
import { isHalf } from '../../../tensor/dtype.js';
import type { Kernels, View } from '../../kernels.js';
import { cudaContext } from '../context.js';
import { SUFFIX, pairSuffix } from '../dtypes.js';
import { devicePointer, launch, newParams } from '../launch.js';
import { cudaKernel } from '../modules.js';
import { type CudaStorage, scratchStorage } from '../storage.js';
import { ROW_DTYPES, type RowLaunch, WARP_MAX_D, needSame, needVec, rowLaunch, rowsOf } from './rows.js';

/** Rows per block of the warp form of the backward kernels (NORM_WARPS in norms.cu). */
const NORM_WARPS = 4;

const optVec = (k: string, what: string, v: View | null, n: number): void => {
  if (v) needVec(k, what, v, n);
};

/**
 * The backward launch: few enough blocks that the partial sums stay a small fraction of the rows
 * read (about 8 warp-blocks or 4 row-blocks per multiprocessor, each looping over its rows).
 */
const backwardLaunch = (rows: number, D: number): RowLaunch =>
  rowLaunch(rows, D, D <= WARP_MAX_D ? { warpsPerBlock: NORM_WARPS, blocksPerSm: 8 } : { blocksPerSm: 4 });

/** out[j] = sum over p of partial[p, j] (parts of them; none: zeros), rounded once into out's dtype. */
function columnSums(partial: number, parts: number, D: number, out: View): void {
  const p = newParams().ptr(partial).i64(parts).i64(D).view_(out, 'gradient');
  launch(cudaKernel('norms', `column_sums_${SUFFIX[out.dtype]}`), p, { grid: Math.min(Math.ceil(D / 32), 4096), block: 256 });
}

/**
 * Runs a backward kernel whose per-block column sums go to `grads` (null: not wanted): straight
 * into a float32 gradient with a single block, else into float32 scratch partials added up by columnSums.
 */
function withPartials(grads: (View | null)[], rows: number, D: number, run: (l: RowLaunch, ptrs: number[]) => void): void {
  if (D === 0) return;
  const l = backwardLaunch(rows, D);
  const direct = (g: View | null): boolean => l.grid === 1 && rows > 0 && g?.dtype === 'float32';
  const addon = cudaContext().addon;
  const scratch: (CudaStorage | null)[] = [];
  try {
    for (const g of grads) scratch.push(g && !direct(g) && rows > 0 ? scratchStorage(addon, 'float32', l.grid * D) : null);
    const ptrs = grads.map((g, i) => (g === null ? 0 : direct(g) ? devicePointer(g, 'gradient') : (scratch[i]?.ptr ?? 0)));
    if (rows > 0) run(l, ptrs);
    grads.forEach((g, i) => {
      if (g && !direct(g)) columnSums(ptrs[i], rows > 0 ? l.grid : 0, D, g);
    });
  } finally {
    for (const s of scratch) s?.release();
  }
}

/** RMSNorm's weight (and its gradient): x's dtype, or float32 beside a half x (float32 master weights). */
function rmsWeight(k: string, what: string, v: View | null, x: View, D: number): void {
  if (!v) return;
  needVec(k, what, v, D, ROW_DTYPES);
  if (v.dtype !== x.dtype && !(v.dtype === 'float32' && isHalf(x.dtype)))
    throw new Error(`cuda ${k}: ${what} has dtype ${v.dtype}; it must be x's (${x.dtype})${isHalf(x.dtype) ? ' or float32' : ''}`);
}

export const normKernels: Pick<Kernels, 'rmsNorm' | 'rmsNormBackward' | 'layerNorm' | 'layerNormBackward'> = {
  rmsNorm(x, weight, eps, offset, out, rstd) {
    const k = 'rms_norm';
    const { rows, D } = rowsOf(k, x, 1, ROW_DTYPES);
    rmsWeight(k, 'weight', weight, x, D);
    needSame(k, 'out', out, x, ROW_DTYPES);
    needVec(k, 'rstd', rstd, rows);
    if (rows === 0) return;
    const l = rowLaunch(rows, D);
    const p = newParams().view_(x, 'x').view_(weight, 'weight').f32(eps).f32(offset).view_(out, 'out').view_(rstd, 'rstd')
      .i64(rows).i64(D);
    launch(cudaKernel('norms', `rms_norm_${l.form}_${pairSuffix(x.dtype, weight?.dtype ?? x.dtype)}`), p, l);
  },
  rmsNormBackward(x, weight, offset, rstd, dy, dx, dweight) {
    const k = 'rms_norm_backward';
    const { rows, D } = rowsOf(k, x, 1, ROW_DTYPES);
    rmsWeight(k, 'weight', weight, x, D);
    rmsWeight(k, 'dweight', dweight, x, D);
    if (weight && dweight && dweight.dtype !== weight.dtype)
      throw new Error(`cuda ${k}: dweight has dtype ${dweight.dtype}, the weight ${weight.dtype}`);
    needVec(k, 'rstd', rstd, rows);
    needSame(k, 'dy', dy, x, ROW_DTYPES);
    needSame(k, 'dx', dx, x, ROW_DTYPES);
    const sfx = pairSuffix(x.dtype, weight?.dtype ?? x.dtype);
    withPartials([dweight], rows, D, (l, [pw]) => {
      const p = newParams().view_(x, 'x').view_(weight, 'weight').f32(offset).view_(rstd, 'rstd').view_(dy, 'dy').view_(dx, 'dx')
        .ptr(pw).i64(rows).i64(D);
      launch(cudaKernel('norms', `rms_norm_backward_${l.form}_${sfx}`), p, l);
    });
  },
  layerNorm(x, weight, bias, eps, out, mean, rstd) {
    const k = 'layer_norm';
    const { rows, D } = rowsOf(k, x, 1);
    optVec(k, 'weight', weight, D);
    optVec(k, 'bias', bias, D);
    needSame(k, 'out', out, x);
    needVec(k, 'mean', mean, rows);
    needVec(k, 'rstd', rstd, rows);
    if (rows === 0) return;
    const l = rowLaunch(rows, D);
    const p = newParams().view_(x, 'x').view_(weight, 'weight').view_(bias, 'bias').f32(eps).view_(out, 'out').view_(mean, 'mean')
      .view_(rstd, 'rstd').i64(rows).i64(D);
    launch(cudaKernel('norms', `layer_norm_${l.form}_f32`), p, l);
  },
  layerNormBackward(x, weight, mean, rstd, dy, dx, dweight, dbias) {
    const k = 'layer_norm_backward';
    const { rows, D } = rowsOf(k, x, 1);
    optVec(k, 'weight', weight, D);
    optVec(k, 'dweight', dweight, D);
    optVec(k, 'dbias', dbias, D);
    needVec(k, 'mean', mean, rows);
    needVec(k, 'rstd', rstd, rows);
    needSame(k, 'dy', dy, x);
    needSame(k, 'dx', dx, x);
    withPartials([dweight, dbias], rows, D, (l, [pw, pb]) => {
      const p = newParams().view_(x, 'x').view_(weight, 'weight').view_(mean, 'mean').view_(rstd, 'rstd').view_(dy, 'dy')
        .view_(dx, 'dx').ptr(pw).ptr(pb).i64(rows).i64(D);
      launch(cudaKernel('norms', `layer_norm_backward_${l.form}_f32`), p, l);
    });
  },
};
