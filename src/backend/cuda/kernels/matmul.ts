// matmul through cuBLASLt (native/cuda/device_gpu.cc): row-major operands read in place when
// their last two dims are row-major or transposed (other layouts are copied first), batch dims
// collapsed to one strided batch with a loop over any outer dims that do not collapse. float32
// accumulates in float32 with TF32 off unless KESTREL_CUDA_TF32=1; bfloat16/float16 operands
// accumulate in float32 and may write a float32 out (never rounded to half). A product of a few
// rows with a Linear's weight (decoding) takes a GEMV kernel that streams W once (gemv.cu).
import { type DType, dtypeBytes } from '../../../tensor/dtype.js';
import { Layout, shapeStr } from '../../../tensor/layout.js';
import { type Kernels, type View, biasProductShapes } from '../../kernels.js';
import { DTYPE_CODE } from '../../cpu/native.js';
import { cudaContext } from '../context.js';
import { collapse, devicePointer, launch, newParams } from '../launch.js';
import { cudaKernel } from '../modules.js';
import { timed } from '../profile.js';
import { scratchStorage } from '../storage.js';
import { copyKernels } from './copy.js';
import { creationKernels } from './creation.js';

const GEMM_DTYPES = new Set<DType>(['float32', 'float64', 'float16', 'bfloat16']);

/** One cuBLASLt call: native/cuda/device.h GemmArgs (row-major, element strides and leading dims, device addresses). */
export interface GemmCall {
  dtype: DType;
  outDtype?: DType;
  transA: boolean;
  transB: boolean;
  M: number;
  N: number;
  K: number;
  batch?: number;
  A: number;
  B: number;
  C: number;
  lda: number;
  ldb: number;
  ldc: number;
  strideA?: number;
  strideB?: number;
  strideC?: number;
  beta: 0 | 1;
  /** a bias vector [N] of the output's dtype added to every row (cuBLASLt's BIAS epilogue) */
  bias?: number;
}

/** Rows of x up to which y = x Wᵀ takes the GEMV kernel (native/cuda/kernels/gemv.cu) instead of cuBLASLt. */
export const GEMV_MAX_ROWS = 4;

/** x [M, K] row-major times W stored row-major [N, K] (a Linear's weight, read transposed), few rows. */
function gemvFits(M: number, a: Operand, b: Operand, dtype: DType): boolean {
  return process.env.KESTREL_CUDA_GEMV !== '0' && M <= GEMV_MAX_ROWS && !a.trans && b.trans && dtype !== 'float64';
}

const GEMV_SUFFIX: Partial<Record<DType, string>> = { float32: 'f32', bfloat16: 'bf16', float16: 'f16' };

/** y [M, N] (+)= x [M, K] Wᵀ, W stored [N, K]: a warp per row of W, 16-byte loads when everything is aligned. */
function gemv(g: { dtype: DType; outDtype: DType; M: number; N: number; K: number; x: number; ldx: number; w: number; ldw: number; y: number; accumulate: boolean }): void {
  const es = dtypeBytes(g.dtype);
  const vec = [g.x, g.w].every((p) => p % 16 === 0) && [g.ldx, g.ldw].every((ld) => (ld * es) % 16 === 0) && (g.K * es) % 16 === 0 ? 1 : 0;
  const sfx = `${GEMV_SUFFIX[g.dtype]}${g.outDtype !== g.dtype ? '_f32' : ''}`;
  const p = newParams().ptr(g.x).i64(g.ldx).i32(g.M).ptr(g.w).i64(g.ldw).i64(g.N).i64(g.K).ptr(g.y).i64(g.N).i32(g.accumulate ? 1 : 0).i32(vec);
  launch(cudaKernel('gemv', `gemv_${sfx}`), p, { grid: Math.max(1, Math.min(Math.ceil(g.N / 8), cudaContext().device.smCount * 32)), block: 256 });
}

/** Queues one GEMM (the only place that packs cudaGemm's arguments). */
export function gemmCall(g: GemmCall): void {
  const { addon } = cudaContext();
  const tf32 = process.env.KESTREL_CUDA_TF32 === '1' ? 1 : 0;
  addon.args.set([
    DTYPE_CODE[g.dtype], g.transA ? 1 : 0, g.transB ? 1 : 0, g.M, g.N, g.K, g.batch ?? 1, g.A, g.B, g.C, g.lda, g.ldb, g.ldc,
    g.strideA ?? 0, g.strideB ?? 0, g.strideC ?? g.M * g.N, 1, g.beta, tf32, DTYPE_CODE[g.outDtype ?? g.dtype], g.bias ?? 0,
  ]);
  const what = `gemm ${g.dtype}${g.outDtype && g.outDtype !== g.dtype ? `->${g.outDtype}` : ''} ${g.transA ? 'T' : 'N'}${g.transB ? 'T' : 'N'}${g.bias ? '+bias' : ''}`;
  timed(what, () => addon.cudaGemm());
}

interface Operand {
  trans: boolean;
  ld: number;
}

/** How cuBLASLt can read a [rows, cols] operand in place (row-major or transposed), or null. */
function readable(v: View, rows: number, cols: number): Operand | null {
  const s = v.layout.strides;
  const [rs, cs] = [s[s.length - 2], s[s.length - 1]];
  if ((cs === 1 || cols === 1) && (rows === 1 || rs >= cols)) return { trans: false, ld: rows === 1 ? cols : rs };
  if ((rs === 1 || rows === 1) && (cols === 1 || cs >= rows)) return { trans: true, ld: cols === 1 ? rows : cs };
  return null;
}

/** The operand itself, or a contiguous copy of it when cuBLASLt cannot read it in place. */
function prepare(v: View, rows: number, cols: number, temps: { release(): void }[]): { view: View; op: Operand } {
  const op = readable(v, rows, cols);
  if (op) return { view: v, op };
  const copy = scratchStorage(cudaContext().addon, v.dtype, v.layout.numel);
  temps.push(copy);
  const view: View = { storage: copy, layout: new Layout([...v.layout.shape]), dtype: v.dtype };
  copyKernels.copy(v, view);
  return { view, op: { trans: false, ld: cols } };
}

/** Whether cuBLASLt's bias epilogue takes out = a b + bias: 2-d operands it reads in place, a contiguous bias of out's dtype, more rows than the GEMV takes. */
function biasFits(a: View, b: View, bias: View, out: View): boolean {
  if (!biasProductShapes(a, b, bias, out)) return false;
  const [M, N] = out.layout.shape;
  const K = a.layout.shape[1];
  const halfIn = a.dtype === 'bfloat16' || a.dtype === 'float16';
  const dtypes = a.dtype === b.dtype && bias.dtype === out.dtype && (out.dtype === a.dtype ? a.dtype !== 'float64' && GEMM_DTYPES.has(a.dtype) : halfIn && out.dtype === 'float32');
  return dtypes && M > GEMV_MAX_ROWS && K > 0 && out.layout.numel > 0 && readable(a, M, K) !== null && readable(b, K, N) !== null &&
    devicePointer(bias, 'bias') % 16 === 0;
}

/** Shapes cuBLASLt has no bias-epilogue algorithm for (device_gpu.cc's plan error): they add the bias the other way. */
const noBiasAlgorithm = new Set<string>();

export const matmulKernels: Pick<Kernels, 'matmul' | 'matmulBias'> = {
  matmulBias(a, b, bias, out) {
    if (!biasFits(a, b, bias, out)) return false;
    const [M, N] = out.layout.shape;
    const K = a.layout.shape[1];
    const [A, B] = [readable(a, M, K)!, readable(b, K, N)!];
    const shape = `${a.dtype} ${out.dtype} ${M} ${N} ${K} ${A.trans} ${A.ld} ${B.trans} ${B.ld}`;
    if (noBiasAlgorithm.has(shape)) return false;
    try {
      gemmCall({
        dtype: a.dtype, outDtype: out.dtype, transA: A.trans, transB: B.trans, M, N, K,
        A: devicePointer(a, 'a'), B: devicePointer(b, 'b'), C: devicePointer(out, 'out'), lda: A.ld, ldb: B.ld, ldc: N, beta: 0,
        bias: devicePointer(bias, 'bias'),
      });
    } catch (e) {
      // the heuristic's refusal comes before anything is queued: nothing was written
      if (!/no algorithm for this GEMM with a bias epilogue/.test((e as Error).message)) throw e;
      noBiasAlgorithm.add(shape);
      return false;
    }
    return true;
  },

  matmul(a, b, out, accumulate) {
    const halfIn = a.dtype === 'bfloat16' || a.dtype === 'float16';
    if (a.dtype !== b.dtype || !GEMM_DTYPES.has(a.dtype) || (out.dtype !== a.dtype && !(halfIn && out.dtype === 'float32')))
      throw new Error(`cuda matmul: dtype a=${a.dtype} b=${b.dtype} out=${out.dtype}; need a and b of one of float32, bfloat16, float16, float64, and out of theirs (or float32 for half a and b)`);
    const [as, bs, os] = [a.layout.shape, b.layout.shape, out.layout.shape];
    const nd = os.length;
    const shapes = `a ${shapeStr(as)}, b ${shapeStr(bs)}, out ${shapeStr(os)}`;
    if (nd < 2 || as.length !== nd || bs.length !== nd) throw new Error(`cuda matmul: need equal ranks >= 2, got ${shapes}`);
    for (let d = 0; d < nd - 2; d++)
      if (as[d] !== os[d] || bs[d] !== os[d]) throw new Error(`cuda matmul: batch dims differ (broadcast before calling): ${shapes}`);
    const [M, N, K] = [os[nd - 2], os[nd - 1], as[nd - 1]];
    if (as[nd - 2] !== M || bs[nd - 2] !== K || bs[nd - 1] !== N) throw new Error(`cuda matmul: shapes do not align: ${shapes}`);
    if (!out.layout.isContiguous()) throw new Error(`cuda matmul: out must be contiguous, got ${shapeStr(os)}`);
    if (out.layout.numel === 0) return;
    if (K === 0) {
      if (!accumulate) creationKernels.fill(out, 0);
      return;
    }
    const temps: { release(): void }[] = [];
    try {
      const A = prepare(a, M, K, temps);
      const B = prepare(b, K, N, temps);
      const batch = os.slice(0, nd - 2);
      const bc = collapse(batch, [A.view.layout.strides.slice(0, nd - 2), B.view.layout.strides.slice(0, nd - 2), out.layout.strides.slice(0, nd - 2)]);
      const last = bc.shape.length - 1;
      const inner = last >= 0 ? bc.shape[last] : 1;
      const stride = (k: number): number => (last >= 0 ? bc.strides[k][last] : 0);
      const outer = bc.shape.slice(0, Math.max(last, 0));
      const count = outer.reduce((p, x) => p * x, 1);
      const bytes = [dtypeBytes(a.dtype), dtypeBytes(a.dtype), dtypeBytes(out.dtype)];
      const base = [devicePointer(A.view, 'a'), devicePointer(B.view, 'b'), devicePointer(out, 'out')];
      if (count === 1 && inner === 1 && gemvFits(M, A.op, B.op, a.dtype)) {
        gemv({ dtype: a.dtype, outDtype: out.dtype, M, N, K, x: base[0], ldx: A.op.ld, w: base[1], ldw: B.op.ld, y: base[2], accumulate });
        return;
      }
      for (let i = 0; i < count; i++) {
        const off = [0, 0, 0];
        for (let d = outer.length - 1, rem = i; d >= 0; d--) {
          const idx = rem % outer[d];
          rem = Math.floor(rem / outer[d]);
          for (let k = 0; k < 3; k++) off[k] += idx * bc.strides[k][d];
        }
        gemmCall({
          dtype: a.dtype, outDtype: out.dtype, transA: A.op.trans, transB: B.op.trans, M, N, K, batch: inner,
          A: base[0] + off[0] * bytes[0], B: base[1] + off[1] * bytes[1], C: base[2] + off[2] * bytes[2],
          lda: A.op.ld, ldb: B.op.ld, ldc: N, strideA: stride(0), strideB: stride(1), strideC: inner > 1 ? stride(2) : M * N,
          beta: accumulate ? 1 : 0,
        });
      }
    } finally {
      for (const t of temps) t.release();
    }
  },
};
