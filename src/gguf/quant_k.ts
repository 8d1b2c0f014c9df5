// ggml's 256-element "K" super-block formats Q4_K and Q6_K (the pieces of llama.cpp's Q4_K_M),
// laid out exactly as ggml-common.h's block_q4_K / block_q6_K; dequantization follows
// ggml-quants.c's dequantize_row_q4_K / q6_K. The quantizers pick scales by a plain min/max rule
// (not llama.cpp's iterative make_qkx2_quants / make_qx_quants search), so their rounding error is
// a little larger than llama.cpp's, but every file they write decodes the same way in both.
//   Q4_K (144 B): d f16 | dmin f16 | scales u8[12] (8 six-bit scales + 8 six-bit mins) | qs u8[128]
//                 x = d*sc[j]*q - dmin*m[j] for sub-block j of 32, q in 0..15
//   Q6_K (210 B): ql u8[128] (low 4 bits) | qh u8[64] (high 2 bits) | scales int8[16] | d f16
//                 x = d*sc[j]*(q - 32) for sub-block j of 16, q in 0..63
import { f16ToF32, f32ToF16 } from '../tensor/half.js';
import { roundAway } from './quant_blocks.js';

const QK_K = 256;
const fr = Math.fround;

/** Sub-block j's 6-bit scale and min from Q4_K's 12 packed bytes (ggml's get_scale_min_k4). */
function scaleMinK4(j: number, q: Uint8Array, o: number): [number, number] {
  if (j < 4) return [q[o + j] & 63, q[o + j + 4] & 63];
  return [(q[o + j + 4] & 0xf) | ((q[o + j - 4] >> 6) << 4), (q[o + j + 4] >> 4) | ((q[o + j] >> 6) << 4)];
}

/** Float32 values -> Q4_K super-blocks (x.length a multiple of 256). */
export function quantizeQ4_K(x: Float32Array): Uint8Array {
  const nb = x.length / QK_K;
  const out = new Uint8Array(nb * 144);
  const view = new DataView(out.buffer);
  const scales = new Float32Array(8), mins = new Float32Array(8);
  for (let b = 0; b < nb; b++) {
    const o = b * QK_K, ob = b * 144;
    // per sub-block of 32: x ~ scale*q - min with q in 0..15 (min >= 0: the block minimum, capped at 0)
    for (let j = 0; j < 8; j++) {
      let lo = 0, hi = -Infinity;
      for (let i = 0; i < 32; i++) [lo, hi] = [Math.min(lo, x[o + 32 * j + i]), Math.max(hi, x[o + 32 * j + i])];
      scales[j] = fr((hi - lo) / 15);
      mins[j] = -lo;
    }
    const maxScale = Math.max(...scales), maxMin = Math.max(...mins);
    const inv = maxScale > 0 ? 63 / maxScale : 0, invMin = maxMin > 0 ? 63 / maxMin : 0;
    const ls = Array.from(scales, (s) => Math.min(63, roundAway(inv * s)));
    const lm = Array.from(mins, (m) => Math.min(63, roundAway(invMin * m)));
    view.setUint16(ob, f32ToF16(maxScale / 63), true);
    view.setUint16(ob + 2, f32ToF16(maxMin / 63), true);
    const sc = ob + 4;
    for (let j = 0; j < 8; j++) {
      if (j < 4) [out[sc + j], out[sc + j + 4]] = [ls[j], lm[j]];
      else {
        out[sc + j + 4] = (ls[j] & 0xf) | ((lm[j] & 0xf) << 4);
        out[sc + j - 4] |= (ls[j] >> 4) << 6;
        out[sc + j] |= (lm[j] >> 4) << 6;
      }
    }
    // requantize against the scales as stored, so the error is the decoder's
    const d = f16ToF32(view.getUint16(ob, true)), dmin = f16ToF32(view.getUint16(ob + 2, true));
    const L = new Uint8Array(QK_K);
    for (let j = 0; j < 8; j++) {
      const [s, m] = scaleMinK4(j, out, sc);
      const ds = fr(d * s), dm = fr(dmin * m);
      for (let i = 0; i < 32; i++) L[32 * j + i] = ds ? Math.max(0, Math.min(15, roundAway(fr(fr(x[o + 32 * j + i] + dm) / ds)))) : 0;
    }
    for (let j = 0; j < QK_K; j += 64) for (let l = 0; l < 32; l++) out[ob + 16 + j / 2 + l] = L[j + l] | (L[j + l + 32] << 4);
  }
  return out;
}

export function dequantizeQ4_K(bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let b = 0; b < n / QK_K; b++) {
    const ob = b * 144;
    const d = f16ToF32(view.getUint16(ob, true)), dmin = f16ToF32(view.getUint16(ob + 2, true));
    for (let j = 0; j < QK_K; j += 64) {
      const [s1, m1] = scaleMinK4(j / 32, bytes, ob + 4), [s2, m2] = scaleMinK4(j / 32 + 1, bytes, ob + 4);
      for (let l = 0; l < 32; l++) {
        const q = bytes[ob + 16 + j / 2 + l];
        out[b * QK_K + j + l] = d * s1 * (q & 0xf) - dmin * m1;
        out[b * QK_K + j + 32 + l] = d * s2 * (q >> 4) - dmin * m2;
      }
    }
  }
  return out;
}

/** Float32 values -> Q6_K super-blocks (x.length a multiple of 256). */
export function quantizeQ6_K(x: Float32Array): Uint8Array {
  const nb = x.length / QK_K;
  const out = new Uint8Array(nb * 210);
  const view = new DataView(out.buffer);
  const scales = new Float32Array(16);
  for (let b = 0; b < nb; b++) {
    const o = b * QK_K, ob = b * 210;
    // per sub-block of 16: the signed value of largest magnitude maps to -32 (as q4_0 does)
    let maxScale = 0;
    for (let j = 0; j < 16; j++) {
      let amax = 0, max = 0;
      for (let i = 0; i < 16; i++) if (amax < Math.abs(x[o + 16 * j + i])) [amax, max] = [Math.abs(x[o + 16 * j + i]), x[o + 16 * j + i]];
      scales[j] = fr(max / -32);
      if (Math.abs(scales[j]) > Math.abs(maxScale)) maxScale = scales[j];
    }
    const iscale = maxScale ? -128 / maxScale : 0;
    view.setUint16(ob + 208, f32ToF16(iscale ? 1 / iscale : 0), true);
    for (let j = 0; j < 16; j++) view.setInt8(ob + 192 + j, Math.min(127, roundAway(iscale * scales[j])));
    const d = f16ToF32(view.getUint16(ob + 208, true));
    const L = new Uint8Array(QK_K).fill(32);
    for (let j = 0; j < 16; j++) {
      const ds = fr(d * view.getInt8(ob + 192 + j));
      if (!ds) continue;
      for (let i = 0; i < 16; i++) L[16 * j + i] = Math.max(-32, Math.min(31, roundAway(fr(x[o + 16 * j + i] / ds)))) + 32;
    }
    for (let j = 0; j < QK_K; j += 128) {
      const ql = ob + j / 2, qh = ob + 128 + j / 4;
      for (let l = 0; l < 32; l++) {
        const [a, b2, c, e] = [L[j + l], L[j + l + 32], L[j + l + 64], L[j + l + 96]];
        out[ql + l] = (a & 0xf) | ((c & 0xf) << 4);
        out[ql + l + 32] = (b2 & 0xf) | ((e & 0xf) << 4);
        out[qh + l] = (a >> 4) | ((b2 >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6);
      }
    }
  }
  return out;
}

export function dequantizeQ6_K(bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let b = 0; b < n / QK_K; b++) {
    const ob = b * 210;
    const d = f16ToF32(view.getUint16(ob + 208, true));
    for (let j = 0; j < QK_K; j += 128) {
      const ql = ob + j / 2, qh = ob + 128 + j / 4, sc = ob + 192 + j / 16;
      for (let l = 0; l < 32; l++) {
        const is = l >> 4, h = bytes[qh + l], y = b * QK_K + j + l;
        out[y] = d * view.getInt8(sc + is) * (((bytes[ql + l] & 0xf) | ((h & 3) << 4)) - 32);
        out[y + 32] = d * view.getInt8(sc + is + 2) * (((bytes[ql + l + 32] & 0xf) | (((h >> 2) & 3) << 4)) - 32);
        out[y + 64] = d * view.getInt8(sc + is + 4) * (((bytes[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32);
        out[y + 96] = d * view.getInt8(sc + is + 6) * (((bytes[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32);
      }
    }
  }
  return out;
}
