// safetensors' dtype names: how many bytes each element takes in the file, the Kestrel dtype it
// loads as, and the decoding of the few that Kestrel stores differently (I16 widened to int32,
// the OCP FP8 formats decoded to float32). Everything else loads as its bytes.
import { type DType, type TypedArray, makeArray } from '../tensor/dtype.js';

/** safetensors dtype -> (bytes, the Kestrel dtype it loads as). I16 and F8 are upcast on read. */
export const ST_DTYPES: Record<string, { bytes: number; dtype: DType }> = {
  F64: { bytes: 8, dtype: 'float64' }, F32: { bytes: 4, dtype: 'float32' }, F16: { bytes: 2, dtype: 'float16' },
  BF16: { bytes: 2, dtype: 'bfloat16' }, I64: { bytes: 8, dtype: 'int64' }, I32: { bytes: 4, dtype: 'int32' },
  I16: { bytes: 2, dtype: 'int32' }, I8: { bytes: 1, dtype: 'int8' }, U8: { bytes: 1, dtype: 'uint8' },
  BOOL: { bytes: 1, dtype: 'bool' }, F8_E4M3: { bytes: 1, dtype: 'float32' }, F8_E5M2: { bytes: 1, dtype: 'float32' },
};

export const TO_ST: Record<DType, string> = {
  float64: 'F64', float32: 'F32', float16: 'F16', bfloat16: 'BF16', int64: 'I64', int32: 'I32', int8: 'I8', uint8: 'U8', bool: 'BOOL',
};

/** True when the file's bytes are the load dtype's storage representation (no decoding step). */
export const isVerbatim = (fileDtype: string): boolean => fileDtype !== 'I16' && !fileDtype.startsWith('F8_');

/**
 * Decodes the non-verbatim dtypes (I16, F8_E4M3, F8_E5M2) from their file bytes.
 * @example decodeWidened('I16', bytes) // an Int32Array of bytes.length / 2 values
 */
export function decodeWidened(fileDtype: string, bytes: Uint8Array): TypedArray {
  switch (fileDtype) {
    case 'I16': {
      const n = bytes.length / 2;
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const out = makeArray('int32', n) as Int32Array;
      for (let i = 0; i < n; i++) out[i] = view.getInt16(2 * i, true);
      return out;
    }
    // an explicit loop: TypedArray.from(src, fn) collects the mapped values in a JS list first, which
    // runs V8 out of heap ("invalid array length") on a tensor of ~10^8 elements
    case 'F8_E4M3':
    case 'F8_E5M2': {
      const decode = fileDtype === 'F8_E4M3' ? fp8e4m3 : fp8e5m2;
      const out = new Float32Array(bytes.length);
      for (let i = 0; i < bytes.length; i++) out[i] = decode(bytes[i]);
      return out;
    }
    default:
      throw new Error(`decodeWidened: ${fileDtype} loads verbatim`);
  }
}

/** OCP FP8 E4M3 (no infinities; S.1111.111 is NaN). */
function fp8e4m3(b: number): number {
  const s = b & 0x80 ? -1 : 1;
  const e = (b >> 3) & 0xf;
  const m = b & 7;
  if (e === 15 && m === 7) return NaN;
  return s * (e === 0 ? m * 2 ** -9 : (1 + m / 8) * 2 ** (e - 7));
}

/** OCP FP8 E5M2 (IEEE-like: inf and NaN at exponent 31). */
function fp8e5m2(b: number): number {
  const s = b & 0x80 ? -1 : 1;
  const e = (b >> 2) & 0x1f;
  const m = b & 3;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (e === 0 ? m * 2 ** -16 : (1 + m / 4) * 2 ** (e - 15));
}
