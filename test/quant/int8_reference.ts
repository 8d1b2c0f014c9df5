// Float64 references for the integer paths with int8 activations (quant_gemv_int8.test.ts, the decode
// GEMV; quant_gemm_q4.test.ts, the prefill GEMM): x quantized the way q8_0 does it, the product, and
// the check against float32 rounding of the kernel's sums.
import assert from 'node:assert/strict';
import { int8ActivationErrorBound } from '../../src/quant/int8_activations.js';

/** Round half to even, like nearbyint in the default rounding mode. */
const roundEven = (v: number): number => {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

/** q8_0's quantization of x's rows in float32 arithmetic: the values d * q the kernel multiplies. */
export function q8Values(x: Float32Array, M: number, K: number): Float64Array {
  const out = new Float64Array(M * K);
  for (let m = 0; m < M; m++)
    for (let b0 = 0; b0 < K; b0 += 32) {
      const end = Math.min(K, b0 + 32);
      let amax = 0;
      for (let i = b0; i < end; i++) amax = Math.max(amax, Math.abs(x[m * K + i]));
      const d = Math.fround(amax / 127);
      const inv = amax > 0 ? Math.fround(127 / amax) : 0;
      for (let i = b0; i < end; i++) out[m * K + i] = d * Math.max(-127, Math.min(127, roundEven(Math.fround(x[m * K + i] * inv))));
    }
  return out;
}

/** y [M, N] = x Wᵀ in float64, and Σ|x w| per output (for the float32 rounding bound). */
export function product(x: ArrayLike<number>, w: Float32Array, M: number, N: number, K: number): { y: Float64Array; abs: Float64Array } {
  const y = new Float64Array(M * N), abs = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0, a = 0;
      for (let kk = 0; kk < K; kk++) {
        s += x[m * K + kk] * w[n * K + kk];
        a += Math.abs(x[m * K + kk] * w[n * K + kk]);
      }
      [y[m * N + n], abs[m * N + n]] = [s, a];
    }
  return { y, abs };
}

/** Checks every output: |got - want| <= slack + K 2^-23 Σ|x w| + 1e-6; returns the largest |got - ref|. */
export function check(got: Float32Array, want: { y: Float64Array; abs: Float64Array }, K: number, what: string, slack?: Float64Array): number {
  let worst = 0;
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i] - want.y[i]);
    const tol = (slack?.[i] ?? 0) + K * 2 ** -23 * want.abs[i] + 1e-6;
    assert.ok(err <= tol, `${what} [${i}]: got ${got[i]}, want ${want.y[i]} (error ${err} > ${tol})`);
    worst = Math.max(worst, err);
  }
  return worst;
}

/**
 * An integer path's y for x [M, K] and the dequantized W [N, K]: equal to q8_0 x times W within float32
 * rounding, or (intPath false: the kernel kept float x) to the float x product. Returns the largest
 * added error against the float x product as a fraction of int8ActivationErrorBound (0 for float x).
 */
export function checkInt8Path(got: Float32Array, xs: Float32Array, wq: Float32Array, [M, N, K]: [number, number, number], intPath: boolean, what: string): number {
  const float = product(xs, wq, M, N, K);
  if (!intPath) {
    check(got, float, K, `${what} (float x)`);
    return 0;
  }
  check(got, product(q8Values(xs, M, K), wq, M, N, K), K, `${what} (q8_0 x, exact)`);
  const bound = int8ActivationErrorBound(xs, wq, [M, N, K]);
  check(got, float, K, `${what} (float x, within the int8 activation bound)`, bound);
  let worst = 0;
  for (let i = 0; i < got.length; i++) if (bound[i] > 0) worst = Math.max(worst, Math.abs(got[i] - float.y[i]) / bound[i]);
  return worst;
}
