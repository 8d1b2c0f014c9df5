// Kestrel's q4 decode format: symmetric 4-bit integers in groups of `blockSize` (32 by default)
// consecutive values of a row, each group with one float32 scale d, W = d * (q - 8) for q in
// 0..15 — llama.cpp's q4_0 arithmetic (d = the group's signed extreme / -8, so the extreme maps
// exactly to -8) in the nibble layout the 4-bit kernels already read (two codes per byte, the
// first in the high nibble, one scale per block of the flattened weight). Expressed as a 16-entry
// code table Q4_CODE[q] = q - 8, the same kernels (native/quant.cc, quant_gemv.cc) decode it.
import { checkBlockSize } from './four_bit.js';

/** The q4 code table: code q stands for q - 8 (times its group's scale). */
export const Q4_CODE = Float32Array.from({ length: 16 }, (_, q) => q - 8);

export interface Q4Tensor {
  shape: [number, number];
  blockSize: number;
  /** ceil(n / 2) bytes, two codes each (high nibble first) */
  packed: Uint8Array;
  /** one float32 scale per group of blockSize values of the flattened weight */
  scales: Float32Array;
}

/**
 * Group-wise q4 quantization of a [rows, cols] matrix (round to nearest, q4_0's scale choice).
 * @example const q = quantizeQ4(weights, [out, in]); const w = dequantizeQ4(q)
 */
export function quantizeQ4(values: Float32Array, shape: [number, number], blockSize = 32): Q4Tensor {
  checkBlockSize('quantizeQ4', blockSize);
  const n = values.length;
  if (shape.length !== 2 || shape[0] * shape[1] !== n) throw new Error(`quantizeQ4: shape [${shape}] does not hold ${n} values`);
  const blocks = Math.ceil(n / blockSize);
  const scales = new Float32Array(blocks);
  const packed = new Uint8Array(Math.ceil(n / 2));
  for (let b = 0; b < blocks; b++) {
    const end = Math.min(n, (b + 1) * blockSize);
    let extreme = 0;
    for (let i = b * blockSize; i < end; i++) {
      if (!Number.isFinite(values[i])) throw new Error(`quantizeQ4: value ${values[i]} at index ${i} is not finite`);
      if (Math.abs(values[i]) > Math.abs(extreme)) extreme = values[i];
    }
    const d = Math.fround(extreme / -8);
    scales[b] = d;
    const inv = d === 0 ? 0 : 1 / d;
    for (let i = b * blockSize; i < end; i++) {
      const q = Math.min(15, Math.max(0, Math.round(values[i] * inv) + 8));
      packed[i >> 1] |= i % 2 === 0 ? q << 4 : q;
    }
  }
  return { shape: [shape[0], shape[1]], blockSize, packed, scales };
}

/** The float32 values a q4 tensor stands for: scale * (q - 8). */
export function dequantizeQ4(q: Q4Tensor): Float32Array {
  const n = q.shape[0] * q.shape[1];
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const byte = q.packed[i >> 1];
    out[i] = Q4_CODE[i % 2 === 0 ? byte >> 4 : byte & 15] * q.scales[Math.floor(i / q.blockSize)];
  }
  return out;
}
