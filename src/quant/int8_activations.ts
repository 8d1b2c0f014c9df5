// What the decode GEMV's int8 activations cost in accuracy (native/quant_gemv_int8.cc): each row
// of x is quantized per block of 32 values to d * round(x / d) with d = max|x| / 127 (llama.cpp's
// q8_0), so every value moves by at most d / 2, and an output y[m, n] = Σ_k x[m, k] W[n, k] moves
// by at most Σ_b (d_b / 2) Σ_{k in b} |W[n, k]| against the product with float x.

/** Activation values per int8 scale in the decode GEMV (q8_0's block). */
export const ACTIVATION_BLOCK = 32;

/**
 * Per output [M, N] (float64), the bound on |y_int8 − x Wᵀ| that int8 activations allow, for
 * x [M, K] and the weight W [N, K] the kernel multiplies (the dequantized values).
 * @example const bound = int8ActivationErrorBound(x, w, [M, N, K])  // then |got - want| <= bound + float rounding
 */
export function int8ActivationErrorBound(x: ArrayLike<number>, w: ArrayLike<number>, [M, N, K]: [number, number, number]): Float64Array {
  if (x.length !== M * K || w.length !== N * K) throw new Error(`int8ActivationErrorBound: x has ${x.length} values, W ${w.length}; expected [${M}, ${K}] and [${N}, ${K}]`);
  const out = new Float64Array(M * N);
  const blocks = Math.ceil(K / ACTIVATION_BLOCK);
  for (let m = 0; m < M; m++) {
    const halfStep = new Float64Array(blocks); // d_b / 2 = max_b |x| / 254
    for (let k = 0; k < K; k++) {
      const b = Math.floor(k / ACTIVATION_BLOCK);
      halfStep[b] = Math.max(halfStep[b], Math.abs(x[m * K + k]) / 254);
    }
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += halfStep[Math.floor(k / ACTIVATION_BLOCK)] * Math.abs(w[n * K + k]);
      out[m * N + n] = s;
    }
  }
  return out;
}
