// Activation-aware weight quantization (AWQ, Lin et al. 2023, "AWQ: Activation-aware Weight
// Quantization for LLM Compression and Acceleration"): weight-only int8/q4 with one scale per
// input channel chosen from calibration activations. Input channels that carry large activations
// matter most, so before rounding W is multiplied by s = mean|x|^α per input channel (and the input
// divided by it at run time): those columns get finer steps. α is searched on a grid, minimizing
// the layer's output error on the calibration inputs, ‖X Ŵᵀ − X Wᵀ‖²; α = 0 (s = 1) is plain
// round-to-nearest, so the chosen scales are never worse than it on the calibration set.
import { matmul } from '../ops/matmul.js';
import { sub } from '../ops/elementwise.js';
import { tensor } from '../ops/creation.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { dequantizeInt8, quantizeInt8 } from './int8.js';
import { dequantizeQ4, quantizeQ4 } from './q4.js';
import type { QuantLinearState } from './quant_linear.js';

export type CalibratedType = 'int8' | 'q4';

export interface AwqOptions {
  type: CalibratedType;
  /** q4 group size (default 32) */
  blockSize?: number;
  /** grid points of α in [0, 1) (default 20: 0, 0.05, ..., 0.95, as AWQ's search) */
  grid?: number;
}

export interface AwqResult {
  state: QuantLinearState;
  alpha: number;
  /** mean squared output error on the calibration inputs, with the chosen scales and with α = 0 */
  error: number;
  rtnError: number;
}

/** The quantized state of w [N, K] and the weight it stands for. */
function roundTrip(w: Float32Array, N: number, K: number, o: AwqOptions): { state: QuantLinearState; deq: Float32Array } {
  if (o.type === 'int8') {
    const q = quantizeInt8(w, [N, K]);
    return { state: { type: 'int8', inFeatures: K, outFeatures: N, data: q.data, scales: q.scb }, deq: dequantizeInt8(q) };
  }
  const q = quantizeQ4(w, [N, K], o.blockSize ?? 32);
  return { state: { type: 'q4', inFeatures: K, outFeatures: N, data: q.packed, scales: q.scales, blockSize: q.blockSize }, deq: dequantizeQ4(q) };
}

/** AWQ's scales for α: mean|x|^α, normalized by sqrt(max · min) so they straddle 1. */
export function awqScales(meanAbs: Float32Array, alpha: number): Float32Array {
  const s = Float32Array.from(meanAbs, (m) => Math.max(m, 1e-8) ** alpha);
  let [lo, hi] = [Infinity, 0];
  for (const v of s) [lo, hi] = [Math.min(lo, v), Math.max(hi, v)];
  const norm = Math.sqrt(lo * hi);
  return s.map((v) => Math.max(v / norm, 1e-4));
}

/**
 * Searches AWQ's α for one Linear: weight [N, K] (float32 values, row-major), x [n, K] calibration
 * inputs (a float32 tensor), meanAbs [K] the mean |x| per input channel over all calibration tokens.
 * @example const r = awqSearch(w, [N, K], x, meanAbs, { type: 'q4' }); new QuantLinear(r.state)
 */
export function awqSearch(w: Float32Array, shape: [number, number], x: Tensor, meanAbs: Float32Array, o: AwqOptions): AwqResult {
  const [N, K] = shape;
  if (w.length !== N * K) throw new Error(`awqSearch: weight of ${w.length} values is not [${N}, ${K}]`);
  if (x.ndim !== 2 || x.shape[1] !== K) throw new Error(`awqSearch: inputs must be [tokens, ${K}], got [${x.shape}]`);
  if (meanAbs.length !== K) throw new Error(`awqSearch: meanAbs must have ${K} values, got ${meanAbs.length}`);
  const grid = o.grid ?? 20;
  const backend = x.backendName;
  return tidy(() => {
    const want = matmul(x, tensor(w, { shape: [N, K], backend }).t());
    const errorOf = (deq: Float32Array): number => tidy(() => {
      const d = sub(matmul(x, tensor(deq, { shape: [N, K], backend }).t()), want);
      return d.mul(d).mean().item();
    });
    let best: AwqResult | null = null;
    for (let g = 0; g < grid; g++) {
      const alpha = g / grid;
      const s = awqScales(meanAbs, alpha);
      const scaled = alpha === 0 ? w : w.map((v, i) => v * s[i % K]);
      const { state, deq } = roundTrip(scaled, N, K, o);
      if (alpha > 0) for (let i = 0; i < deq.length; i++) deq[i] /= s[i % K];
      const error = errorOf(deq);
      const rtnError: number = best ? best.rtnError : error;
      if (!best || error < best.error) best = { state: alpha === 0 ? state : { ...state, inputScale: s.map((v) => 1 / v) }, alpha, error, rtnError };
      else best.rtnError = rtnError;
    }
    return best!;
  });
}
