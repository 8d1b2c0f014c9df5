// A Linear whose weight is stored quantized (NF4 / FP4 4-bit with optional double quantization,
// LLM.int8's row-scaled int8, the q4 decode format of q4.ts, or plain bfloat16) and frozen: forward and backward run the quantized matmul
// (src/ops/fused/quant_linear.ts), which dequantizes tile by tile inside the kernel, so no
// float copy of the weight is ever resident. Bias stays float. A float32 input of at most 8 rows
// (decoding) takes native/quant_gemv.cc, which streams the weight once at memory bandwidth.
//   y = x Wᵀ + b,  dx = g W,  no gradient for W (QLoRA trains adapters on top of it).
import type { Tensor } from '../tensor/tensor.js';
import { tensor } from '../ops/creation.js';
import { add, mul } from '../ops/elementwise.js';
import { clone } from '../ops/view.js';
import { toTypedArray } from '../ops/transfer.js';
import { type QuantTensors, quantLinear, quantLinearTransposed } from '../ops/fused/quant_linear.js';
import { noGrad } from '../tensor/grad_mode.js';
import { keep, tidy } from '../tensor/scope.js';
import { Module, Parameter } from '../nn/module.js';
import type { Linear } from '../nn/layers.js';
import { type QuantizedStats, dequantizeStats } from './double_quant.js';
import { type FourBitType, checkBlockSize, codeOf, dequantize4bit, quantize4bit } from './four_bit.js';
import { dequantizeInt8, quantizeInt8 } from './int8.js';
import { Q4_CODE, dequantizeQ4, quantizeQ4 } from './q4.js';
import { bf16ToF32, f32ToBf16 } from '../tensor/half.js';

export type QuantType = FourBitType | 'int8' | 'q4' | 'bf16';
export const QUANT_TYPES: readonly QuantType[] = ['nf4', 'fp4', 'int8', 'q4', 'bf16'];
/** Types stored as 4-bit codes into a 16-entry table. */
const isFourBit = (t: QuantType): boolean => t === 'nf4' || t === 'fp4' || t === 'q4';

export interface QuantOptions {
  type: QuantType;
  /** 4-bit: values per absmax (default 64; q4: 32) */
  blockSize?: number;
  /** 4-bit: store the absmax in 8 bits too (QLoRA's double quantization) */
  doubleQuant?: boolean;
}

/** A quantized weight as raw arrays (what a bitsandbytes checkpoint holds). */
export interface QuantLinearState {
  type: QuantType;
  inFeatures: number;
  outFeatures: number;
  /** nf4/fp4/q4: ceil(out*in/2) bytes, two codes each, high nibble first; int8: out*in values; bf16: out*in raw bfloat16 */
  data: Uint8Array | Int8Array | Uint16Array;
  /** nf4/fp4: absmax per block (or its double-quantized form); q4: the scale per group; int8: SCB, the absmax per row; bf16: empty */
  scales: Float32Array | QuantizedStats;
  /** nf4/fp4: values per absmax (default 64) */
  blockSize?: number;
  /** nf4/fp4: the 16-entry code table (a checkpoint's quant_map; default the type's own) */
  code?: Float32Array;
  /**
   * AWQ: per-input-channel factors s' [in] the input is multiplied by before the quantized product
   * (the stored weight is W * diag(1/s'), quantized: y = (x * s') Q(W / s')ᵀ); absent = 1
   */
  inputScale?: Float32Array;
}

export class QuantLinear extends Module {
  readonly type: QuantType;
  readonly inFeatures: number;
  readonly outFeatures: number;
  /** 4-bit: values per absmax; int8: in_features (one SCB per row) */
  readonly blockSize: number;
  bias: Tensor | null;
  /** AWQ's per-input-channel factors the input is multiplied by (QuantLinearState.inputScale), or null */
  input_scale: Tensor | null;
  // Buffers (not parameters: frozen, and not in the state dict), counted as 'param' memory.
  /** packed 4-bit codes (uint8) or int8 values */
  qweight: Tensor;
  /** float32 absmax per block / SCB per row, or uint8 codes of them with double quantization */
  scales: Tensor;
  code: Tensor | null;
  nested_code: Tensor | null;
  nested_absmax: Tensor | null;
  /** double quantization: the mean subtracted from the absmax and the nested block size (0 / 1 without) */
  readonly nestedOffset: number;
  readonly nestedBlockSize: number;
  /**
   * Inference only: float32 inputs of 32 rows or more that need no gradient (a prompt's prefill) are
   * rounded to this dtype and multiplied by the weight decoded to it, at the bf16 GEMM's rate, with a
   * float32 result; decode steps keep the float32 GEMV. 'int8': inputs of 9 rows or more (past the
   * decode GEMV's 8) may be quantized to int8 per block of 32 (q8_0) where the backend has an integer
   * product for the weight (the CPU on AVX2: q4's GEMM, int8's GEMV 8 rows at a time up to 127 rows),
   * as the decode GEMV's are. null (the default, and training): float32. A marked layer keeps its
   * mark if it is then trained: inputs that need no gradient (the first layer's) still take that dtype.
   * Set by usePrefillDtype (quantizeForInference, kestrel-quantized folders).
   */
  prefillDtype: 'bfloat16' | 'int8' | null = null;

  /**
   * From raw quantized arrays (copied to the backend); `bias` (float [out]) becomes a frozen parameter.
   * @example new QuantLinear({ type: 'nf4', inFeatures: 576, outFeatures: 1536, data: packed, scales: absmax })
   */
  constructor(state: QuantLinearState, opts: { bias?: Tensor | null; backend?: string } = {}) {
    super();
    const { type, inFeatures: K, outFeatures: N, data, scales } = state;
    if (!QUANT_TYPES.includes(type)) throw new Error(`QuantLinear: unsupported type ${JSON.stringify(type)} (expected ${QUANT_TYPES.join(', ')})`);
    const where = `QuantLinear [${N}, ${K}] (${type})`;
    if (!(Number.isInteger(N) && Number.isInteger(K) && N > 0 && K > 0)) throw new Error(`${where}: in/out features must be positive integers`);
    const four = isFourBit(type);
    [this.type, this.inFeatures, this.outFeatures] = [type, K, N];
    this.blockSize = four ? state.blockSize ?? (type === 'q4' ? 32 : 64) : K;
    if (four) checkBlockSize(where, this.blockSize);
    const wantData = four ? Math.ceil((N * K) / 2) : N * K;
    const arrayType = four ? Uint8Array : type === 'int8' ? Int8Array : Uint16Array;
    if (data.length !== wantData || !(data instanceof arrayType))
      throw new Error(`${where}: data must be a ${arrayType.name} of ${wantData} values, got ${data.constructor.name}(${data.length})`);
    const nScales = four ? Math.ceil((N * K) / this.blockSize) : type === 'int8' ? N : 0;
    const stats = scales instanceof Float32Array ? null : scales;
    if (stats && !four) throw new Error(`${where}: int8 weights have no double-quantized statistics`);
    const count = stats ? stats.codes.length : (scales as Float32Array).length;
    if (count !== nScales) throw new Error(`${where}: expected ${nScales} ${four ? 'absmax' : 'SCB'} values, got ${count}`);
    const code = four ? state.code ?? (type === 'q4' ? Q4_CODE : codeOf(type as FourBitType)) : null;
    if (code && code.length !== 16) throw new Error(`${where}: the code table must have 16 entries, got ${code.length}`);
    if (stats && stats.code.length !== 256) throw new Error(`${where}: the nested code must have 256 entries, got ${stats.code.length}`);
    if (stats && stats.nestedAbsmax.length !== Math.ceil(nScales / stats.blockSize))
      throw new Error(`${where}: expected ${Math.ceil(nScales / stats.blockSize)} nested absmax values, got ${stats.nestedAbsmax.length}`);
    const buffer = (name: string, values: Float32Array | Uint8Array | Int8Array | Uint16Array, dtype: 'float32' | 'uint8' | 'int8' | 'bfloat16') =>
      this.registerBuffer(name, tensor(values, { dtype, backend: opts.backend, tag: 'param' }), false, { format: true });
    this.qweight = buffer('qweight', data, four ? 'uint8' : type === 'int8' ? 'int8' : 'bfloat16');
    this.scales = stats ? buffer('scales', stats.codes, 'uint8') : buffer('scales', scales as Float32Array, 'float32');
    this.code = code && buffer('code', code, 'float32');
    this.nested_code = stats && buffer('nested_code', stats.code, 'float32');
    this.nested_absmax = stats && buffer('nested_absmax', stats.nestedAbsmax, 'float32');
    this.nestedOffset = stats?.offset ?? 0;
    this.nestedBlockSize = stats?.blockSize ?? 1;
    const bias = opts.bias ?? null;
    if (bias && (bias.ndim !== 1 || bias.shape[0] !== N)) throw new Error(`${where}: bias must be [${N}], got [${bias.shape}]`);
    this.bias = bias && Parameter(bias, false);
    const s = state.inputScale;
    if (s && s.length !== K) throw new Error(`${where}: inputScale must have ${K} values (one per input feature), got ${s.length}`);
    this.input_scale = s ? buffer('input_scale', s, 'float32') : null;
  }

  get doubleQuant(): boolean {
    return this.nested_absmax !== null;
  }

  /**
   * Quantizes a Linear's weight (its bias is copied and stays float).
   * @example const q = QuantLinear.fromLinear(linear, { type: 'nf4', doubleQuant: true })
   */
  static fromLinear(l: Linear, opts: QuantOptions): QuantLinear {
    return QuantLinear.fromWeight(l.weight, l.bias, opts);
  }

  /**
   * Quantizes a [out, in] weight (and copies the bias, which stays float); the weight is not freed.
   * @example const head = QuantLinear.fromWeight(model.model.embed_tokens.weight, null, { type: 'q4' })
   */
  static fromWeight(weight: Tensor, bias: Tensor | null, opts: QuantOptions): QuantLinear {
    const { type } = opts;
    if (weight.ndim !== 2) throw new Error(`QuantLinear.fromWeight: the weight must be 2-d [out, in], got [${weight.shape}]`);
    const [N, K] = weight.shape;
    if (!QUANT_TYPES.includes(type)) throw new Error(`QuantLinear.fromLinear: unsupported type ${JSON.stringify(type)} (expected ${QUANT_TYPES.join(', ')})`);
    const w = weight.toFloat32Array();
    const b = bias ? keep(noGrad(() => clone(bias))) : null;
    const backend = weight.backendName;
    if (opts.doubleQuant && (type === 'int8' || type === 'q4' || type === 'bf16'))
      throw new Error(`QuantLinear.fromLinear: doubleQuant applies to nf4/fp4, not ${type}`);
    if (type === 'bf16') {
      // a loop, not Uint16Array.from(w, f32ToBf16): that collects a JS list first and runs V8 out of
      // heap on a large tied head (qwen 0.5B's 151936 x 896)
      const data = new Uint16Array(w.length);
      for (let i = 0; i < w.length; i++) data[i] = f32ToBf16(w[i]);
      return new QuantLinear({ type, inFeatures: K, outFeatures: N, data, scales: new Float32Array(0) }, { bias: b, backend });
    }
    if (type === 'q4') {
      const q = quantizeQ4(w, [N, K], opts.blockSize);
      return new QuantLinear({ type, inFeatures: K, outFeatures: N, data: q.packed, scales: q.scales, blockSize: q.blockSize }, { bias: b, backend });
    }
    if (type === 'int8') {
      const q = quantizeInt8(w, [N, K]);
      return new QuantLinear({ type, inFeatures: K, outFeatures: N, data: q.data, scales: q.scb }, { bias: b, backend });
    }
    const q = quantize4bit(w, [N, K], { type, blockSize: opts.blockSize, doubleQuant: opts.doubleQuant });
    return new QuantLinear({ type, inFeatures: K, outFeatures: N, data: q.packed, scales: q.absmax, blockSize: q.blockSize }, { bias: b, backend });
  }

  /**
   * The kernel's view of the weight: the buffers themselves, or `merged`, N rows of this layer's
   * format held in other buffers (a merged q|k|v or gate|up projection, src/quant/merge_projections.ts).
   */
  kernelWeight(merged?: { N: number; data: Tensor; scales: Tensor }): QuantTensors {
    const nested = this.nested_code && this.nested_absmax
      ? { code: this.nested_code, absmax: this.nested_absmax, offset: this.nestedOffset, blockSize: this.nestedBlockSize }
      : null;
    const kind = this.type === 'int8' || this.type === 'bf16' ? this.type : '4bit';
    const data = merged?.data ?? this.qweight;
    return {
      kind, N: merged?.N ?? this.outFeatures, K: this.inFeatures, data, code: this.code,
      blockSize: kind === '4bit' ? this.blockSize : 0, scales: kind === 'bf16' ? data : merged?.scales ?? this.scales, nested,
      prefillDtype: this.prefillDtype,
    };
  }

  /** x Wᵀ over the last dim ([..., in] -> [..., out]); no bias, records no autograd (FrozenLinear). */
  applyWeight(x: Tensor): Tensor {
    return noGrad(() => tidy(() => quantLinear(this.scaleInput(x), this.kernelWeight())));
  }

  /** x * input_scale (AWQ), or x itself. */
  private scaleInput(x: Tensor): Tensor {
    return this.input_scale ? mul(x, this.input_scale) : x;
  }

  /** g W over the last dim ([..., out] -> [..., in]), the input gradient of applyWeight (FrozenLinear). */
  applyWeightTransposed(g: Tensor): Tensor {
    // y = (x * s) Qᵀ, so dx = (g Q) * s
    return noGrad(() => tidy(() => this.scaleInput(quantLinearTransposed(g, this.kernelWeight()))));
  }

  forward(x: Tensor): Tensor {
    const bias = this.bias;
    if (!bias && !this.input_scale) return quantLinear(x, this.kernelWeight());
    return tidy(() => {
      const y = quantLinear(this.scaleInput(x), this.kernelWeight());
      return bias ? add(y, bias) : y;
    });
  }

  /** The dequantized weight [out, in] (a new float32 tensor; the caller frees it). */
  dequantize(): Tensor {
    const [N, K] = [this.outFeatures, this.inFeatures];
    const read = <T>(t: Tensor): T => toTypedArray(t) as T;
    let values: Float32Array;
    if (this.type === 'bf16') {
      // a loop: Float32Array.from(src, fn) collects a JS list first (out of heap at ~10^8 elements)
      const h = read<Uint16Array>(this.qweight);
      values = new Float32Array(h.length);
      for (let i = 0; i < h.length; i++) values[i] = bf16ToF32(h[i]);
    }
    else if (this.type === 'q4') values = dequantizeQ4({ shape: [N, K], blockSize: this.blockSize, packed: read<Uint8Array>(this.qweight), scales: read<Float32Array>(this.scales) });
    else if (this.type === 'int8') values = dequantizeInt8({ shape: [N, K], data: read<Int8Array>(this.qweight), scb: read<Float32Array>(this.scales) });
    else {
      const absmax = this.nested_absmax
        ? dequantizeStats({ codes: read<Uint8Array>(this.scales), nestedAbsmax: read<Float32Array>(this.nested_absmax), offset: this.nestedOffset, blockSize: this.nestedBlockSize, code: read<Float32Array>(this.nested_code!) })
        : read<Float32Array>(this.scales);
      values = dequantize4bit({ type: this.type, shape: [N, K], blockSize: this.blockSize, packed: read<Uint8Array>(this.qweight), absmax }, read<Float32Array>(this.code!));
    }
    if (this.input_scale) {
      // the weight this layer multiplies x by: Q * diag(s)
      const s = read<Float32Array>(this.input_scale);
      for (let i = 0; i < values.length; i++) values[i] *= s[i % K];
    }
    return tensor(values, { shape: [N, K], backend: this.qweight.backendName });
  }
}
