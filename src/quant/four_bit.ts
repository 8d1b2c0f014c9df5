// Block-wise 4-bit weight formats of QLoRA (Dettmers et al. 2023) with bitsandbytes' layout:
// each block of `blockSize` values is scaled by its absmax to [-1, 1] and every value becomes the
// index of the nearest code-book entry; two codes share a byte, the first in the high nibble.
// NF4's code book holds the quantiles of N(0, 1); FP4 is bitsandbytes' e2m1 table. With
// doubleQuant the absmax vector itself is stored in 8 bits (double_quant.ts).
import { type QuantizedStats, dequantizeStats, quantizeStats } from './double_quant.js';

/** NF4 code book (bitsandbytes' values, from the QLoRA paper). */
export const NF4_CODE = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334,
  -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
  0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/** FP4 (e2m1) as bitsandbytes decodes it: code 8+ is the negative of code - 8. */
const FP4_POSITIVE = [0, 0.0052083333, 0.6666667, 1, 0.33333333, 0.5, 0.16666667, 0.25];
export const FP4_CODE = Float32Array.from([...FP4_POSITIVE, ...FP4_POSITIVE.map((v) => -v)]);

export type FourBitType = 'nf4' | 'fp4';

export interface FourBitTensor {
  type: FourBitType;
  shape: number[];
  blockSize: number;
  /** ceil(n / 2) bytes, two codes each (high nibble first) */
  packed: Uint8Array;
  /** one float32 scale per block, or (doubleQuant) those scales stored in 8 bits */
  absmax: Float32Array | QuantizedStats;
}

export const codeOf = (t: FourBitType): Float32Array => (t === 'nf4' ? NF4_CODE : FP4_CODE);

/** The float32 absmax of every block (decoding double-quantized statistics). */
export const blockAbsmax = (q: FourBitTensor): Float32Array => (q.absmax instanceof Float32Array ? q.absmax : dequantizeStats(q.absmax));

/** Throws unless blockSize is a power of two in [16, 4096] (bitsandbytes' range, and 16). */
export function checkBlockSize(op: string, blockSize: number): void {
  if (!Number.isInteger(blockSize) || blockSize < 16 || blockSize > 4096 || (blockSize & (blockSize - 1)) !== 0)
    throw new Error(`${op}: blockSize must be a power of two in [16, 4096], got ${blockSize}`);
}

/** Index of the code-book entry nearest to x (ties to the lower index). */
function nearest(code: Float32Array, x: number): number {
  let best = 0;
  let err = Infinity;
  for (let i = 0; i < code.length; i++) {
    const e = Math.abs(code[i] - x);
    if (e < err) {
      err = e;
      best = i;
    }
  }
  return best;
}

export interface FourBitOptions {
  type?: FourBitType;
  /** values per absmax (default 64) */
  blockSize?: number;
  /** store the absmax values in 8 bits too (QLoRA's double quantization) */
  doubleQuant?: boolean;
}

/**
 * Quantizes float32 values block by block (the absmax are exact; doubleQuant then compresses them,
 * as bitsandbytes does).
 * @example const q = quantize4bit(weights, [out, in], { type: 'nf4' }); const w = dequantize4bit(q)
 */
export function quantize4bit(data: Float32Array, shape: number[], opts: FourBitOptions = {}): FourBitTensor {
  const type = opts.type ?? 'nf4';
  if (type !== 'nf4' && type !== 'fp4') throw new Error(`quantize4bit: type must be 'nf4' or 'fp4', got ${JSON.stringify(type)}`);
  const blockSize = opts.blockSize ?? 64;
  checkBlockSize('quantize4bit', blockSize);
  const n = data.length;
  if (shape.reduce((a, b) => a * b, 1) !== n) throw new Error(`quantize4bit: shape [${shape}] does not hold ${n} values`);
  const code = codeOf(type);
  const blocks = Math.ceil(n / blockSize);
  const absmax = new Float32Array(blocks);
  const packed = new Uint8Array(Math.ceil(n / 2));
  for (let b = 0; b < blocks; b++) {
    const end = Math.min(n, (b + 1) * blockSize);
    let m = 0;
    for (let i = b * blockSize; i < end; i++) {
      if (!Number.isFinite(data[i])) throw new Error(`quantize4bit: value ${data[i]} at index ${i} is not finite`);
      m = Math.max(m, Math.abs(data[i]));
    }
    absmax[b] = m;
    for (let i = b * blockSize; i < end; i++) {
      const q = nearest(code, m === 0 ? 0 : data[i] / m);
      packed[i >> 1] |= i % 2 === 0 ? q << 4 : q;
    }
  }
  return { type, shape: [...shape], blockSize, packed, absmax: opts.doubleQuant ? quantizeStats(absmax) : absmax };
}

/** The float32 values a 4-bit tensor stands for: code[q] * absmax of its block. */
export function dequantize4bit(q: FourBitTensor, code: Float32Array = codeOf(q.type)): Float32Array {
  const n = q.shape.reduce((a, b) => a * b, 1);
  const absmax = blockAbsmax(q);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const byte = q.packed[i >> 1];
    const c = i % 2 === 0 ? byte >> 4 : byte & 15;
    out[i] = code[c] * absmax[Math.floor(i / q.blockSize)];
  }
  return out;
}
