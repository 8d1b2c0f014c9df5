// LoRA (Hu et al. 2021) around any Linear: y = base(x) + s * B(A(dropout(x))), with s = alpha / r
// (or alpha / sqrt(r) for rsLoRA). The base stays frozen; property names follow PEFT
// (base_layer, lora_A, lora_B) so adapter keys map one to one.
import { add, mul } from '../ops/elementwise.js';
import { dropout } from '../ops/attention.js';
import { linear } from '../ops/matmul.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { normal_, uniform } from '../nn/init.js';
import { Linear } from '../nn/layers.js';
import { Module, Parameter } from '../nn/module.js';
import { backendOf } from '../backend/index.js';
import { zeros } from '../ops/creation.js';
import { matmul } from '../ops/matmul.js';

export interface LoraOptions {
  r: number;
  alpha: number;
  dropout?: number;
  useRslora?: boolean;
  /** B zero and A kaiming-uniform (PEFT's default), or A gaussian with std 1/r */
  init?: 'default' | 'gaussian';
}

/** A Linear-shaped weight holder: lora_A [r, in] and lora_B [out, r] are plain matrices. */
class Matrix extends Module {
  weight: Tensor;
  constructor(w: Tensor) {
    super();
    this.weight = Parameter(w);
  }
}

export class LoraLinear extends Module {
  base_layer: Linear;
  lora_A: Matrix;
  lora_B: Matrix;
  readonly scaling: number;
  readonly dropoutP: number;

  constructor(base: Linear, readonly opts: LoraOptions) {
    super();
    const { r, alpha } = opts;
    if (!Number.isInteger(r) || r <= 0 || r > Math.min(base.inFeatures, base.outFeatures))
      throw new Error(`LoRA: rank ${r} must be a positive integer no larger than the layer (${base.outFeatures} x ${base.inFeatures})`);
    this.base_layer = base;
    base.requiresGrad_(false);
    this.scaling = opts.useRslora ? alpha / Math.sqrt(r) : alpha / r;
    this.dropoutP = opts.dropout ?? 0;
    const backend = base.weight.backendName;
    // PEFT: A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B = 0; gaussian: A ~ N(0, 1/r^2)
    const a = uniform([r, base.inFeatures], 1 / Math.sqrt(base.inFeatures), { backend });
    if (opts.init === 'gaussian') normal_(a, 1 / r);
    this.lora_A = new Matrix(a);
    this.lora_B = new Matrix(zeros([base.outFeatures, r], { backend }));
  }

  get inFeatures(): number {
    return this.base_layer.inFeatures;
  }
  get outFeatures(): number {
    return this.base_layer.outFeatures;
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const y = this.base_layer.forward(x);
      const h = this.dropoutP > 0 ? dropout(x, this.dropoutP, this.training) : x;
      return add(y, mul(linear(linear(h, this.lora_A.weight), this.lora_B.weight), this.scaling));
    });
  }

  /** W + s B A as a new plain Linear (the adapter folded into the base). */
  merged(): Linear {
    const base = this.base_layer;
    const out = new Linear(base.inFeatures, base.outFeatures, { bias: base.bias !== null, backend: base.weight.backendName });
    noGrad(() => tidy(() => {
      const delta = mul(matmul(this.lora_B.weight, this.lora_A.weight), this.scaling);
      backendOf(out.weight).kernels.copy(add(base.weight, delta), out.weight);
      if (base.bias && out.bias) backendOf(out.bias).kernels.copy(base.bias, out.bias);
    }));
    out.weight.requiresGrad = base.weight.requiresGrad;
    return out;
  }
}

