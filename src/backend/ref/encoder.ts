// Reference encoder-layer kernels (EncoderKernels): residual add + LayerNorm and the bias-GELU
// pair, row by row in float64 from the formulas src/ops/fused/add_layer_norm.ts and bias_gelu.ts
// write out. The native kernels (native/encoder_fused.cc) are tested against these.
import type { EncoderKernels } from '../kernels.js';
import { UNARY_MATH } from './math.js';
import * as nn from './nn.js';
import { load, store } from './storage.js';

const lastDim = (shape: readonly number[]): number => shape[shape.length - 1] ?? 1;

export const encoder: EncoderKernels = {
  dtypes: ['float32', 'float64'],
  addLayerNorm(x, residual, weight, bias, eps, out, sum, mean, rstd) {
    const [a, b] = [load(x), load(residual)];
    // the sum is stored (rounded to its dtype) and the norm reads it back, as the native kernel does
    store(sum, a.map((v, i) => v + b[i]));
    nn.layerNorm(sum, weight, bias, eps, out, mean, rstd);
  },
  biasGelu(act, z, out) {
    const { f } = UNARY_MATH[act];
    store(out, load(z).map((v) => f(v, 0, 0)));
  },
  biasGeluBackward(act, z, dy, dz, dbias) {
    const [zv, g] = [load(z), load(dy)];
    const { df } = UNARY_MATH[act];
    const d = zv.map((v, i) => g[i] * df(v, 0, 0));
    if (dbias) {
      const N = lastDim(z.layout.shape);
      const db = new Float64Array(N);
      d.forEach((v, i) => (db[i % N] += v));
      store(dbias, db);
    }
    store(dz, d);
  },
};
