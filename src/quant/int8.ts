// LLM.int8()'s weight format (Dettmers et al. 2022; bitsandbytes Linear8bitLt): one int8 per
// value with one float32 absmax per row (bitsandbytes' `SCB`), W[n, k] = q[n, k] * SCB[n] / 127.

export interface Int8Tensor {
  shape: [number, number];
  /** rows * cols values, row-major */
  data: Int8Array;
  /** absmax of every row */
  scb: Float32Array;
}

/** Round half to even, like torch.round. */
function roundEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Row-wise int8 quantization of a [rows, cols] matrix (bitsandbytes' int8_vectorwise_quant).
 * @example const q = quantizeInt8(weights, [out, in]); const w = dequantizeInt8(q)
 */
export function quantizeInt8(values: Float32Array, shape: [number, number]): Int8Tensor {
  const [rows, cols] = shape;
  if (shape.length !== 2 || rows * cols !== values.length) throw new Error(`quantizeInt8: shape [${shape}] does not hold ${values.length} values`);
  const data = new Int8Array(values.length);
  const scb = new Float32Array(rows);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let i = r * cols; i < (r + 1) * cols; i++) {
      if (!Number.isFinite(values[i])) throw new Error(`quantizeInt8: value ${values[i]} at index ${i} is not finite`);
      m = Math.max(m, Math.abs(values[i]));
    }
    scb[r] = m;
    if (m > 0) for (let i = r * cols; i < (r + 1) * cols; i++) data[i] = roundEven((values[i] * 127) / m);
  }
  return { shape: [rows, cols], data, scb };
}

/** The float32 values an int8 matrix stands for. */
export function dequantizeInt8(q: Int8Tensor): Float32Array {
  const cols = q.shape[1];
  return Float32Array.from(q.data, (v, i) => (v * q.scb[Math.floor(i / cols)]) / 127);
}
