// ggml's 32-element block formats Q8_0 and Q4_0, quantize and dequantize, byte for byte as
// ggml-quants.c's quantize_row_q8_0_ref / quantize_row_q4_0_ref (float32 arithmetic, C rounding).
//   Q8_0 block (34 B): d f16 | qs int8[32]          x = d * q,        d = amax / 127
//   Q4_0 block (18 B): d f16 | qs u8[16]            x = d * (q - 8),  d = (value of largest |x|) / -8
//   (Q4_0: element j in the low nibble of qs[j], element j + 16 in its high nibble)
import { f16ToF32, f32ToF16 } from '../tensor/half.js';

const QK = 32;
const fr = Math.fround;

/** C's roundf (half away from zero), which ggml's nearest rounding in the q8_0 path uses. */
export const roundAway = (v: number): number => (v < 0 ? -Math.round(-v) : Math.round(v));

/** Float32 values -> Q8_0 blocks (x.length a multiple of 32). */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  const nb = x.length / QK;
  const out = new Uint8Array(nb * 34);
  const view = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    let amax = 0;
    for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[b * QK + j]));
    const d = fr(amax / 127);
    const id = d ? fr(1 / d) : 0;
    view.setUint16(b * 34, f32ToF16(d), true);
    for (let j = 0; j < QK; j++) view.setInt8(b * 34 + 2 + j, roundAway(fr(x[b * QK + j] * id)));
  }
  return out;
}

export function dequantizeQ8_0(bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let b = 0; b < n / QK; b++) {
    const d = f16ToF32(view.getUint16(b * 34, true));
    for (let j = 0; j < QK; j++) out[b * QK + j] = d * view.getInt8(b * 34 + 2 + j);
  }
  return out;
}

/** Float32 values -> Q4_0 blocks (x.length a multiple of 32). */
export function quantizeQ4_0(x: Float32Array): Uint8Array {
  const nb = x.length / QK;
  const out = new Uint8Array(nb * 18);
  const view = new DataView(out.buffer);
  for (let b = 0; b < nb; b++) {
    const o = b * QK;
    // the signed value of largest magnitude maps to -8, so the full range [-8, 7] is used
    let amax = 0, max = 0;
    for (let j = 0; j < QK; j++) if (amax < Math.abs(x[o + j])) [amax, max] = [Math.abs(x[o + j]), x[o + j]];
    const d = fr(max / -8);
    const id = d ? fr(1 / d) : 0;
    view.setUint16(b * 18, f32ToF16(d), true);
    for (let j = 0; j < QK / 2; j++) {
      const lo = Math.min(15, Math.trunc(fr(fr(x[o + j] * id) + 8.5)));
      const hi = Math.min(15, Math.trunc(fr(fr(x[o + QK / 2 + j] * id) + 8.5)));
      out[b * 18 + 2 + j] = lo | (hi << 4);
    }
  }
  return out;
}

export function dequantizeQ4_0(bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let b = 0; b < n / QK; b++) {
    const d = f16ToF32(view.getUint16(b * 18, true));
    for (let j = 0; j < QK / 2; j++) {
      const q = bytes[b * 18 + 2 + j];
      out[b * QK + j] = d * ((q & 0xf) - 8);
      out[b * QK + QK / 2 + j] = d * ((q >> 4) - 8);
    }
  }
  return out;
}
