// One entry point per direction for every ggml type Kestrel writes or reads: float32 values to a
// tensor's file bytes, and file bytes back to float32 (what the loader casts to the model's dtype).
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../tensor/half.js';
import { type GgmlTypeName, ggmlBytes } from './constants.js';
import { dequantizeQ4_0, dequantizeQ8_0, quantizeQ4_0, quantizeQ8_0 } from './quant_blocks.js';
import { dequantizeQ4_K, dequantizeQ6_K, quantizeQ4_K, quantizeQ6_K } from './quant_k.js';

function halves(x: Float32Array, conv: (v: number) => number): Uint8Array {
  const h = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) h[i] = conv(x[i]);
  return new Uint8Array(h.buffer);
}

function fromHalves(bytes: Uint8Array, n: number, conv: (h: number) => number): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = conv(view.getUint16(2 * i, true));
  return out;
}

/**
 * Float32 values (row-major, rows a whole number of blocks) -> the bytes ggml stores for type t.
 * @example encodeGgml('Q8_0', new Float32Array(64)).length // 68: two 34-byte blocks
 */
export function encodeGgml(t: GgmlTypeName, x: Float32Array): Uint8Array {
  ggmlBytes(t, x.length); // throws unless whole blocks
  switch (t) {
    case 'F32': return new Uint8Array(x.buffer.slice(x.byteOffset, x.byteOffset + x.byteLength));
    case 'F16': return halves(x, f32ToF16);
    case 'BF16': return halves(x, f32ToBf16);
    case 'Q8_0': return quantizeQ8_0(x);
    case 'Q4_0': return quantizeQ4_0(x);
    case 'Q4_K': return quantizeQ4_K(x);
    case 'Q6_K': return quantizeQ6_K(x);
  }
}

/**
 * The bytes of `n` elements of type t -> their float32 values.
 * @example decodeGgml('Q8_0', encodeGgml('Q8_0', x), x.length) // x within half a step per block
 */
export function decodeGgml(t: GgmlTypeName, bytes: Uint8Array, n: number): Float32Array {
  if (bytes.length !== ggmlBytes(t, n)) throw new Error(`gguf: ${n} elements of ${t} take ${ggmlBytes(t, n)} bytes, got ${bytes.length}`);
  switch (t) {
    case 'F32': return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    case 'F16': return fromHalves(bytes, n, f16ToF32);
    case 'BF16': return fromHalves(bytes, n, bf16ToF32);
    case 'Q8_0': return dequantizeQ8_0(bytes, n);
    case 'Q4_0': return dequantizeQ4_0(bytes, n);
    case 'Q4_K': return dequantizeQ4_K(bytes, n);
    case 'Q6_K': return dequantizeQ6_K(bytes, n);
  }
}
