// Reference optimizer step, the formula written out (PyTorch's AdamW, decoupled weight decay).
import type { AdamWStep, Kernels, View } from '../kernels.js';
import { load, store } from './storage.js';

export const adamw: Kernels['adamw'] = (tensors, s) => {
  for (const { param, grad, expAvg, expAvgSq } of tensors) adamwOne(param, grad, expAvg, expAvgSq, s);
};

function adamwOne(param: View, grad: View, expAvg: View, expAvgSq: View, s: AdamWStep): void {
  const [p, g, m, v] = [load(param), load(grad), load(expAvg), load(expAvgSq)];
  for (let i = 0; i < p.length; i++) {
    p[i] *= 1 - s.lr * s.weightDecay;
    m[i] = s.beta1 * m[i] + (1 - s.beta1) * g[i];
    v[i] = s.beta2 * v[i] + (1 - s.beta2) * g[i] * g[i];
    p[i] -= (s.lr / s.bc1) * (m[i] / (Math.sqrt(v[i]) / Math.sqrt(s.bc2) + s.eps));
  }
  store(param, p);
  store(expAvg, m);
  store(expAvgSq, v);
}

/** sum(x²) in float64, element by element (the cpu kernel sums fixed chunks of 32768 and adds those in order). */
export const sumSquares: NonNullable<Kernels['sumSquares']> = (x, out) => {
  let s = 0;
  for (const v of load(x)) s += v * v;
  store(out, Float64Array.of(s));
};
