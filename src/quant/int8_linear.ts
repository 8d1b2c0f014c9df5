// A Linear whose weight is LLM.int8()'s row-wise int8 (Dettmers et al. 2022, bitsandbytes'
// Int8Params): each row o stores round(127 W[o, :] / SCB[o]) with SCB[o] = max |W[o, :]|. Kestrel uses it
// weight-only: forward and backward dequantize W[o, i] = q[o, i] · (SCB[o] / 127) into a temporary that is
// freed after use, so activations are never quantized (no outlier threshold is needed). Frozen.
//   y = x Wᵀ + b,  dx = g W,  no gradient for W.
import { tensor } from '../ops/creation.js';
import { inputs, record } from '../ops/dispatch.js';
import { add } from '../ops/elementwise.js';
import { matmul } from '../ops/matmul.js';
import { transpose } from '../ops/view.js';
import { toTypedArray } from '../ops/transfer.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy, keep } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { Module } from '../nn/module.js';

export class Int8Linear extends Module {
  /** int8 [out, in] and float32 [out], counted as parameter memory */
  readonly weightInt8: Tensor;
  readonly scb: Tensor;
  bias: Tensor | null;

  constructor(readonly inFeatures: number, readonly outFeatures: number, q: { weight: Int8Array; scb: Float32Array }, bias: Tensor | null, backend?: string) {
    super();
    if (q.weight.length !== inFeatures * outFeatures || q.scb.length !== outFeatures)
      throw new Error(`Int8Linear: expected ${outFeatures * inFeatures} int8 weights and ${outFeatures} row scales, got ${q.weight.length} and ${q.scb.length}`);
    this.weightInt8 = keep(tensor(q.weight, { shape: [outFeatures, inFeatures], dtype: 'int8', backend, tag: 'param' }));
    this.scb = keep(tensor(q.scb, { backend, tag: 'param' }));
    this.bias = bias;
  }

  /** The dequantized weight [out, in] (a new float32 tensor; the caller frees it). */
  dequantize(): Tensor {
    const q = toTypedArray(this.weightInt8) as Int8Array;
    const scb = toTypedArray(this.scb) as Float32Array;
    const w = new Float32Array(q.length);
    for (let o = 0; o < this.outFeatures; o++) {
      const s = Math.fround(scb[o] / 127);
      for (let i = o * this.inFeatures; i < (o + 1) * this.inFeatures; i++) w[i] = q[i] * s;
    }
    return tensor(w, { shape: [this.outFeatures, this.inFeatures], backend: this.scb.backendName });
  }

  /** x Wᵀ over the last dim, no bias, no autograd. */
  applyWeight(x: Tensor): Tensor {
    return noGrad(() => tidy(() => matmul(x, transpose(this.dequantize()))));
  }

  /** g W over the last dim (the input gradient of applyWeight), no autograd. */
  applyWeightTransposed(g: Tensor): Tensor {
    return noGrad(() => tidy(() => matmul(g, this.dequantize())));
  }

  forward(x: Tensor): Tensor {
    inputs('Int8Linear', x);
    const y = record('Int8Linear', this.applyWeight(x), [x], (g) => [this.applyWeightTransposed(g)], []);
    return this.bias ? add(y, this.bias) : y;
  }
}
