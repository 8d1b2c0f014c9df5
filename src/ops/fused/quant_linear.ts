// y = x Wᵀ with W [N, K] stored quantized (4-bit NF4/FP4 or int8), dequantized tile by tile
// inside the kernel (native/quant.cc), so no float copy of W outlives (or even fills) a call.
// Equals linear(x, dequantize(W)). W is frozen, so backward gives only the input gradient:
//   dx = dy W      (dW is never formed: QLoRA trains adapters beside the quantized weight)
// On a backend whose GEMM takes half operands (Backend.halfMatmul) a bf16/fp16 input multiplies
// W decoded to its dtype, as bitsandbytes does on GPUs; elsewhere half inputs compute in float32.
// A weight with a prefillDtype (inference: QuantLinear.prefillDtype) multiplies float32 inputs of
// at least PREFILL_MIN_ROWS[dtype] rows that need no gradient in that dtype, with a float32 result: a
// prompt's prefill at the bf16 GEMM's rate, while decode steps (and small batches) keep float32.
// 'int8' lets the backend quantize those rows to int8 (q8_0) where it has an integer product for
// the weight's format (the CPU on AVX2: q4's GEMM, and int8's decode GEMV 8 rows at a time up to 127
// rows), as the decode GEMV does for every step. Whatever the marking, bf16 weights multiply 9-63
// float32 rows by the decode GEMV 8 rows at a time on AVX2 CPUs (native quant_gemv_rows: float x, so
// the same products; the tiled path decodes all of W whatever M is).
import { backendOf, withLayout } from '../../backend/index.js';
import type { QuantWeight } from '../../backend/kernels.js';
import { autocastDtype } from '../../tensor/autocast.js';
import { type DType, isFloat, isHalf } from '../../tensor/dtype.js';
import { Layout, shapeStr } from '../../tensor/layout.js';
import { tidy } from '../../tensor/scope.js';
import type { Tensor } from '../../tensor/tensor.js';
import { emptyLike, inputs, needsGrad, record, save } from '../dispatch.js';
import { inCompute, to } from '../elementwise.js';
import { contiguous } from '../view.js';

/** A QuantWeight whose views are tensors (a QuantLinear's buffers). */
export interface QuantTensors extends QuantWeight {
  data: Tensor;
  code: Tensor | null;
  scales: Tensor;
  nested: { code: Tensor; absmax: Tensor; offset: number; blockSize: number } | null;
  /** float32 rows (PREFILL_MIN_ROWS[dtype] or more, no gradient) are rounded to this dtype for the product; absent: float32 */
  prefillDtype?: 'bfloat16' | 'int8' | null;
}

/**
 * Rows from which a prefillDtype weight multiplies float32 inputs in that dtype. bf16: an AMX tile's 32 rows; up to
 * 8 rows take the decode GEMV, and between, the half GEMM would take its converting path on Intel CPUs (bf16
 * operands widened back to float32: slower than the float32 tiles and less exact), so those rows stay float32.
 * int8: every row count past the decode GEMV's 8, whose rows are int8 already (quant_gemv_int8.cc). The float path
 * decodes the whole weight for the tiles of any M, so at 16 rows its decoding dominated: a 16-token prompt of
 * smol135m q4 took 120-160 ms on Zen 3 at 28 GFLOP/s, where the integer kernel runs 16 rows at ~125.
 */
export const PREFILL_MIN_ROWS = { bfloat16: 32, int8: 9 } as const;

/** Aliases of every tensor of w, kept for backward (freed with the tape node). */
function saveWeight(w: QuantTensors): { w: QuantTensors; handles: Tensor[] } {
  const nested = w.nested && { ...w.nested, code: save(w.nested.code), absmax: save(w.nested.absmax) };
  const s: QuantTensors = { ...w, data: save(w.data), code: w.code && save(w.code), scales: save(w.scales), nested };
  const handles = [s.data, s.scales, ...(s.code ? [s.code] : []), ...(nested ? [nested.code, nested.absmax] : [])];
  return { w: s, handles };
}

/** fn(x) in x's dtype where the backend multiplies half operands itself, else in float32 (inCompute). */
const inGemmCompute = (x: Tensor, fn: (x: Tensor) => Tensor): Tensor =>
  isHalf(x.dtype) && backendOf(x).halfMatmul ? fn(x) : inCompute(x, fn);

/** A contiguous tensor seen as the 2-d [rows, cols] matrix the kernels take. */
const matrix = (t: Tensor, cols: number) => withLayout(t, new Layout([t.numel / cols || 0, cols], undefined, t.layout.offset));

/**
 * x [..., K] -> [..., N] through a quantized weight (no bias).
 * @example const y = quantLinear(x, { kind: '4bit', N, K, data: packed, code, blockSize: 64, scales: absmax, nested: null })
 */
export function quantLinear(x: Tensor, w: QuantTensors): Tensor {
  inputs('quantLinear', x, w.data, w.scales, w.code, w.nested?.code, w.nested?.absmax);
  if (x.ndim === 0 || x.shape[x.ndim - 1] !== w.K)
    throw new Error(`quantLinear: input ${shapeStr(x.shape)} must end in the weight's in_features ${w.K} (weight [${w.N}, ${w.K}])`);
  // under autocast the product runs (and returns) in the autocast dtype, as linear() does
  const ac = autocastDtype();
  if (ac && isFloat(x.dtype) && x.dtype !== ac) return tidy(() => quantLinear(to(x, ac), w));
  const prefill = !!w.prefillDtype && x.dtype === 'float32' && x.numel / w.K >= PREFILL_MIN_ROWS[w.prefillDtype] && !needsGrad(x);
  if (prefill && w.prefillDtype === 'bfloat16' && backendOf(x).halfMatmul) return tidy(() => product(to(x, 'bfloat16'), w, 'float32'));
  return inGemmCompute(x, (xf) => product(xf, w, xf.dtype, prefill && w.prefillDtype === 'int8'));
}

/** y = x Wᵀ by the kernel, y of `outDtype` (x's, or float32 for a half x); records backward when x needs it. */
function product(xf: Tensor, w: QuantTensors, outDtype: DType, int8Activations = false): Tensor {
  const k = backendOf(xf).kernels;
  const out = emptyLike(xf, [...xf.shape.slice(0, -1), w.N], outDtype);
  // a 2-d input with strided rows goes in as is; anything else is made contiguous first
  const direct = xf.ndim === 2 && (xf.strides[1] === 1 || w.K === 1);
  const xc = direct ? xf : contiguous(xf);
  k.quantLinear(direct ? xf : matrix(xc, w.K), w, matrix(out, w.N), int8Activations);
  if (xc !== xf) xc.dispose();
  if (!needsGrad(xf)) return out;
  const saved = saveWeight(w);
  return record('quantLinear', out, [xf], (g) => [quantLinearTransposed(g, saved.w)], saved.handles);
}

/**
 * g [..., N] -> g W [..., K]: the input gradient of quantLinear, as a plain function (records
 * nothing; for fused ops that write their own backward, e.g. LoRA over a quantized base).
 */
export function quantLinearTransposed(g: Tensor, w: QuantTensors): Tensor {
  inputs('quantLinearTransposed', g, w.data, w.scales, w.code, w.nested?.code, w.nested?.absmax);
  if (g.ndim === 0 || g.shape[g.ndim - 1] !== w.N)
    throw new Error(`quantLinearTransposed: gradient ${shapeStr(g.shape)} must end in the weight's out_features ${w.N} (weight [${w.N}, ${w.K}])`);
  return inGemmCompute(g, (gf) => {
    const gc = contiguous(gf);
    const dx = emptyLike(gc, [...gc.shape.slice(0, -1), w.K]);
    backendOf(gc).kernels.quantLinearBackward(matrix(gc, w.N), w, matrix(dx, w.K));
    gc.dispose();
    return dx;
  });
}
