// quantLinear / quantLinearBackward on the GPU (native/cuda/kernels/quant.cu) with native/quant.cc's
// checks and messages. Batches decode W tile by tile (whole rows, at most `tileFloats` floats) into
// a float32 scratch and multiply it with cuBLASLt, as bitsandbytes does for training-sized
// batches; a forward of at most `gemvRows` rows (decoding) runs a fused GEMV that reads the packed
// weight once. float32 only (the op layer computes half inputs in float32); TF32 as matmul.ts.
import { dtypeBytes } from '../../../tensor/dtype.js';
import type { DType } from '../../../tensor/dtype.js';
import { Layout } from '../../../tensor/layout.js';
import type { Kernels, QuantWeight, View } from '../../kernels.js';
import { dims } from '../checks.js';
import { cudaContext } from '../context.js';
import { devicePointer, gridFor, launch, newParams } from '../launch.js';
import { cudaKernel } from '../modules.js';
import { type CudaStorage, scratchStorage } from '../storage.js';
import { copyKernels } from './copy.js';
import { creationKernels } from './creation.js';
import { gemmCall } from './matmul.js';

/** Tile and path sizes (the tests shrink them to run every path on small shapes). */
export const quantTuning = {
  /** floats of decoded weight per GEMM tile (64 MiB) */
  tileFloats: 1 << 24,
  /** forwards with at most this many rows (<= 8, the kernel's accumulators) take the GEMV */
  gemvRows: 8,
};
const GEMV_MAX_ROWS = 8;
/** Blocks of 8 warps for the GEMV, a warp per 4 rows of W (KST_GEMV_R in quant.cu). */
const gemvGrid = (N: number): number => gridFor(Math.ceil(N / 4) * 32, 256);

const pow2 = (v: number): boolean => Number.isInteger(v) && v > 0 && (v & (v - 1)) === 0;

function fail(k: string, why: string): never {
  throw new Error(`${k}: ${why}`);
}

/** A contiguous vector of exactly n elements of dtype; its device address. */
function vec(k: string, what: string, v: View, dtype: DType, n: number): number {
  if (v.dtype !== dtype) fail(k, `${what} must be ${dtype}, got ${v.dtype}`);
  if (!v.layout.isContiguous()) fail(k, `${what} ${dims(v.layout.shape)} must be contiguous`);
  if (v.layout.numel !== n) fail(k, `${what} ${dims(v.layout.shape)} must have ${n} elements`);
  return devicePointer(v, what);
}

/** Launches of one checked weight: decode a flat range, or the fused GEMV. */
interface Decoder {
  /** decodes flat elements [e0, e0 + count) into `out` (float32, or the half dtype of half inputs) */
  dequant(e0: number, count: number, out: number, dtype: GemmDType): void;
  gemv(x: Matrix, y: View): void;
}

/** The dtypes the batched path multiplies in: float32, or bf16/f16 inputs with their own tiles. */
type GemmDType = 'float32' | 'bfloat16' | 'float16';
const SFX: Record<GemmDType, string> = { float32: 'f32', bfloat16: 'bf16', float16: 'f16' };

/** A matrix with unit column stride: element (i, j) at ptr + bytes (i ld + j). */
interface Matrix {
  view: View;
  rows: number;
  cols: number;
  ld: number;
  ptr: number;
}

function decoder(k: string, w: QuantWeight): Decoder {
  const { N, K } = w;
  if (!Number.isInteger(N) || !Number.isInteger(K) || N < 0 || K < 0) fail(k, `negative weight size N=${N} K=${K}`);
  const numel = N * K;
  if (w.kind === 'bf16') fail(k, 'bf16 decode weights run on the cpu backend only (cast the Linear to bfloat16 on cuda instead)');
  if (w.kind === 'int8') {
    if (w.code) fail(k, 'an int8 weight takes no code table');
    if (w.nested) fail(k, 'an int8 weight has no double-quantized statistics');
    const q = vec(k, 'int8 weight', w.data, 'int8', numel);
    const scb = vec(k, 'SCB', w.scales, 'float32', N);
    return {
      dequant(e0, count, out, dtype) {
        const p = newParams().ptr(q).ptr(scb).i64(K).i64(e0).i64(count).ptr(out);
        launch(cudaKernel('quant', `dequant8_${SFX[dtype]}`), p, { grid: gridFor(count), block: 256 });
      },
      gemv(x, y) {
        const p = newParams().ptr(q).ptr(scb).ptr(x.ptr).i64(x.ld).i32(x.rows).i64(N).i64(K).i32(K % 4 === 0 && q % 4 === 0 ? 1 : 0)
          .view_(y, 'out');
        launch(cudaKernel('quant', 'gemv8_f32'), p, { grid: gemvGrid(N), block: 256 });
      },
    };
  }
  const bs = w.blockSize;
  if (!pow2(bs) || bs < 2 || bs > 65536) fail(k, `blockSize ${bs} must be a power of two`);
  const data = vec(k, 'packed weight', w.data, 'uint8', Math.ceil(numel / 2));
  if (!w.code) fail(k, 'a 4-bit weight needs its 16-entry code table');
  const code = vec(k, 'code table', w.code, 'float32', 16);
  const blocks = Math.ceil(numel / bs);
  let scales = { absmax: 0, qabsmax: 0, ncode: 0, nabsmax: 0, offset: 0, nshift: 0 };
  if (!w.nested) scales.absmax = vec(k, 'absmax', w.scales, 'float32', blocks);
  else {
    const nb = w.nested.blockSize;
    if (!pow2(nb)) fail(k, `nested blockSize ${nb} must be a power of two`);
    scales = {
      absmax: 0,
      qabsmax: vec(k, 'absmax codes', w.scales, 'uint8', blocks),
      ncode: vec(k, 'nested code', w.nested.code, 'float32', 256),
      nabsmax: vec(k, 'nested absmax', w.nested.absmax, 'float32', Math.ceil(blocks / nb)),
      offset: w.nested.offset,
      nshift: Math.log2(nb),
    };
  }
  const weightParams = () => newParams().ptr(data).ptr(code).ptr(scales.absmax).ptr(scales.qabsmax).ptr(scales.ncode).ptr(scales.nabsmax)
    .f32(scales.offset).i32(scales.nshift).i32(Math.log2(bs));
  return {
    dequant(e0, count, out, dtype) {
      const p = weightParams().i64(e0).i64(count).ptr(out);
      launch(cudaKernel('quant', `dequant4_${SFX[dtype]}`), p, { grid: gridFor(count), block: 256 });
    },
    gemv(x, y) {
      const aligned = K % 8 === 0 && bs >= 8 && data % 4 === 0 ? 1 : 0;
      const p = weightParams().ptr(x.ptr).i64(x.ld).i32(x.rows).i64(N).i64(K).i32(aligned).view_(y, 'out');
      launch(cudaKernel('quant', 'gemv4_f32'), p, { grid: gemvGrid(N), block: 256 });
    },
  };
}

/** A 2-d operand (float32, or bf16/f16 as the half path takes them): rows may be strided (x, dy) unless it is the output (contiguous). */
function matrix(k: string, what: string, v: View, out: boolean): Matrix {
  const s = v.layout.shape;
  if (!(v.dtype in SFX)) fail(k, `${what} must be float32, bfloat16 or float16, got ${v.dtype} ${dims(s)}`);
  if (s.length !== 2) fail(k, `${what} ${dims(s)} must be 2-d [rows, features]`);
  const [rows, cols] = s;
  const [rs, cs] = v.layout.strides;
  if (out ? !v.layout.isContiguous() : (cols > 1 && cs !== 1) || rs < 0)
    fail(k, `${what} ${dims(s)}${out ? ' must be contiguous' : ' needs unit stride in its last dim'}`);
  return { view: v, rows, cols, ld: rows > 1 ? rs : Math.max(cols, 1), ptr: devicePointer(v, what) };
}

/** A contiguous scratch matrix [rows, cols] of dtype (released by the caller with the other temps). */
function scratchMatrix(rows: number, cols: number, dtype: GemmDType, temps: CudaStorage[]): Matrix {
  const s = scratchStorage(cudaContext().addon, dtype, rows * cols);
  temps.push(s);
  return { view: { storage: s, layout: new Layout([rows, cols]), dtype }, rows, cols, ld: cols, ptr: s.ptr };
}

/** m itself when cuBLASLt can read it (ld >= cols), else a contiguous copy (temps released by the caller). */
function gemmReadable(m: Matrix, temps: CudaStorage[]): Matrix {
  if (m.ld >= m.cols) return m;
  const dtype = m.view.dtype as GemmDType;
  const copy = scratchStorage(cudaContext().addon, dtype, m.rows * m.cols);
  temps.push(copy);
  const view: View = { storage: copy, layout: new Layout([m.rows, m.cols]), dtype };
  copyKernels.copy(m.view, view);
  return { view, rows: m.rows, cols: m.cols, ld: m.cols, ptr: copy.ptr };
}

/** Row-major C [M, N] (ldc) = A [M, K] (lda) op(B) + beta C, B stored [K, N] or (transB) [N, K]; A, B of dtype, C of out. */
function gemm(g: { dtype: GemmDType; out: GemmDType; transB: boolean; M: number; N: number; K: number; A: number; lda: number; B: number; ldb: number; C: number; ldc: number; beta: 0 | 1 }): void {
  gemmCall({ ...g, outDtype: g.out, transA: false });
}

/** How many of W's rows one decoded tile holds (at most quantTuning.tileFloats elements). */
const tileRows = (N: number, K: number): number => Math.max(1, Math.min(N, Math.floor(quantTuning.tileFloats / K)));

/** Runs body(n0, n1, tile) over tiles of W's rows decoded into one scratch of dtype. */
function overTiles(d: Decoder, N: number, K: number, dtype: GemmDType, body: (n0: number, n1: number, tile: number) => void): void {
  const T = tileRows(N, K);
  const scratch = scratchStorage(cudaContext().addon, dtype, T * K);
  try {
    for (let n0 = 0; n0 < N; n0 += T) {
      const n1 = Math.min(N, n0 + T);
      d.dequant(n0 * K, (n1 - n0) * K, scratch.ptr, dtype);
      body(n0, n1, scratch.ptr);
    }
  } finally {
    scratch.release();
  }
}

/** Casts between a Matrix and a contiguous scratch of another dtype (the GEMV runs in float32). */
function castInto(src: Matrix, dst: Matrix): void {
  copyKernels.copy(src.view, dst.view);
}

export const quantKernels: Pick<Kernels, 'quantLinear' | 'quantLinearBackward'> = {
  quantLinear(x, w, y) {
    const k = 'quant_linear';
    const d = decoder(k, w);
    const X = matrix(k, 'x', x, false);
    const Y = matrix(k, 'out', y, true);
    if (X.cols !== w.K) fail(k, `x ${dims(x.layout.shape)} has ${X.cols} features, the weight takes K=${w.K}`);
    if (Y.rows !== X.rows || Y.cols !== w.N) fail(k, `out ${dims(y.layout.shape)} must be [${X.rows}, ${w.N}]`);
    if (y.dtype !== x.dtype) fail(k, `out has dtype ${y.dtype}, x ${x.dtype} (they must agree)`);
    const { N, K } = w;
    const M = X.rows;
    if (M === 0 || N === 0) return;
    if (K === 0) return creationKernels.fill(y, 0);
    const dtype = x.dtype as GemmDType;
    const temps: CudaStorage[] = [];
    try {
      if (M <= Math.min(quantTuning.gemvRows, GEMV_MAX_ROWS)) {
        if (dtype === 'float32') return d.gemv(X, y);
        // half rows (a decode step): the GEMV in float32 on upcast rows, rounded once into y
        const xf = scratchMatrix(M, K, 'float32', temps);
        const yf = scratchMatrix(M, N, 'float32', temps);
        castInto(X, xf);
        d.gemv(xf, yf.view);
        return castInto(yf, Y);
      }
      const A = gemmReadable(X, temps);
      const es = dtypeBytes(dtype);
      // y[:, n0:n1] = x tileᵀ, the tile stored [n1 - n0, K] in x's dtype
      overTiles(d, N, K, dtype, (n0, n1, tile) =>
        gemm({ dtype, out: dtype, transB: true, M, N: n1 - n0, K, A: A.ptr, lda: A.ld, B: tile, ldb: K, C: Y.ptr + n0 * es, ldc: N, beta: 0 }));
    } finally {
      for (const t of temps) t.release();
    }
  },

  quantLinearBackward(dy, w, dx) {
    const k = 'quant_linear_backward';
    const d = decoder(k, w);
    const G = matrix(k, 'dy', dy, false);
    const DX = matrix(k, 'dx', dx, true);
    if (G.cols !== w.N) fail(k, `dy ${dims(dy.layout.shape)} has ${G.cols} features, the weight gives N=${w.N}`);
    if (DX.rows !== G.rows || DX.cols !== w.K) fail(k, `dx ${dims(dx.layout.shape)} must be [${G.rows}, ${w.K}]`);
    if (dx.dtype !== dy.dtype) fail(k, `dx has dtype ${dx.dtype}, dy ${dy.dtype} (they must agree)`);
    const { N, K } = w;
    const M = G.rows;
    if (M === 0 || K === 0) return;
    if (N === 0) return creationKernels.fill(dx, 0); // an empty inner dim sums to zero
    const dtype = dy.dtype as GemmDType;
    const temps: CudaStorage[] = [];
    try {
      const A = gemmReadable(G, temps);
      const es = dtypeBytes(dtype);
      // dx += dy[:, n0:n1] tile, the first tile overwriting; over several tiles a half dx sums in a
      // float32 scratch and is rounded once at the end
      const acc = dtype !== 'float32' && tileRows(N, K) < N ? scratchMatrix(M, K, 'float32', temps) : DX;
      overTiles(d, N, K, dtype, (n0, n1, tile) =>
        gemm({ dtype, out: acc.view.dtype as GemmDType, transB: false, M, N: K, K: n1 - n0, A: A.ptr + n0 * es, lda: A.ld, B: tile, ldb: K, C: acc.ptr, ldc: K, beta: n0 === 0 ? 0 : 1 }));
      if (acc !== DX) castInto(acc, DX);
    } finally {
      for (const t of temps) t.release();
    }
  },
};
