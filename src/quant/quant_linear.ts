// A Linear whose weight is stored in 4 bits (NF4/FP4): forward and backward dequantize the weight
// into a temporary that is freed right after use, so no full-precision copy of the layer stays
// resident. The quantized weight is frozen (QLoRA trains adapters on top of it).
//   y = x Wᵀ + b,  dx = g W  (W = dequantize(q) each time), no gradient for W.
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
import type { Linear } from '../nn/layers.js';
import { type FourBitTensor, type FourBitType, dequantize4bit, quantize4bit } from './four_bit.js';

export class QuantLinear extends Module {
  /** the packed codes and the per-block scales, counted as parameter memory */
  readonly packed: Tensor;
  readonly absmax: Tensor;
  bias: Tensor | null;

  constructor(readonly inFeatures: number, readonly outFeatures: number, readonly type: FourBitType, readonly blockSize: number, q: { packed: Uint8Array; absmax: Float32Array }, bias: Tensor | null, backend?: string) {
    super();
    this.packed = keep(tensor(q.packed, { dtype: 'uint8', backend, tag: 'param' }));
    this.absmax = keep(tensor(q.absmax, { backend, tag: 'param' }));
    this.bias = bias;
  }

  /** Quantizes a Linear's weight (its bias stays float). */
  static fromLinear(l: Linear, opts: { type?: FourBitType; blockSize?: number } = {}): QuantLinear {
    const q = quantize4bit(l.weight.toFloat32Array(), [l.outFeatures, l.inFeatures], opts);
    const bias = l.bias ? keep(noGrad(() => l.bias!.clone())) : null;
    return new QuantLinear(l.inFeatures, l.outFeatures, q.type, q.blockSize, q, bias, l.weight.backendName);
  }

  private fourBit(): FourBitTensor {
    return {
      type: this.type, shape: [this.outFeatures, this.inFeatures], blockSize: this.blockSize,
      packed: toTypedArray(this.packed) as Uint8Array, absmax: toTypedArray(this.absmax) as Float32Array,
    };
  }

  /** The dequantized weight [out, in] (a new float32 tensor; the caller frees it). */
  dequantize(): Tensor {
    return tensor(dequantize4bit(this.fourBit()), { shape: [this.outFeatures, this.inFeatures], backend: this.packed.backendName });
  }

  forward(x: Tensor): Tensor {
    inputs('QuantLinear', x);
    const out = noGrad(() => tidy(() => matmul(x, transpose(this.dequantize()))));
    const y = record('QuantLinear', out, [x], (g) => [tidy(() => matmul(g, this.dequantize()))], []);
    return this.bias ? add(y, this.bias) : y;
  }
}

