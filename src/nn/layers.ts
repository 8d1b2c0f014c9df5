// The basic layers, each a thin Module over an op: Linear, Embedding, RMSNorm, LayerNorm.
import { linear, matmul } from '../ops/matmul.js';
import { to } from '../ops/elementwise.js';
import { transpose } from '../ops/view.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import { autocastDtype } from '../tensor/autocast.js';
import { embedding } from '../ops/indexing.js';
import { layerNorm, rmsNorm } from '../ops/norm.js';
import type { Tensor } from '../tensor/tensor.js';
import { type InitOpts, normal, onesInit, uniform, zerosInit } from './init.js';
import { Module, Parameter } from './module.js';

/**
 * A frozen base layer LoRA can wrap (a plain Linear, or a QuantLinear whose weight is 4-bit):
 * the two products with its weight, without bias and without autograd, so a fused op can call
 * them from its own forward and backward. Neither keeps a full-precision copy of a quantized
 * weight alive after it returns.
 */
export interface FrozenLinear {
  /** x Wᵀ over the last dim ([..., in] -> [..., out]); no bias, records no autograd (frozen weight). */
  applyWeight(x: Tensor): Tensor;
  /** g W over the last dim ([..., out] -> [..., in]), the input gradient of applyWeight; no autograd. */
  applyWeightTransposed(g: Tensor): Tensor;
  readonly inFeatures: number;
  readonly outFeatures: number;
  bias: Tensor | null;
}

/** y = x Wᵀ + b with weight [out, in] (torch.nn.Linear). */
export class Linear extends Module implements FrozenLinear {
  weight: Tensor;
  bias: Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: InitOpts & { bias?: boolean } = {}) {
    super();
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = Parameter(uniform([outFeatures, inFeatures], bound, opts));
    this.bias = opts.bias === false ? null : Parameter(uniform([outFeatures], bound, opts));
  }
  forward(x: Tensor): Tensor {
    // a weight kept in another dtype (a frozen bf16 base under LoRA) meets x outside autocast: compute in x's
    if (this.weight.dtype === x.dtype || autocastDtype()) return linear(x, this.weight, this.bias);
    return tidy(() => linear(x, this.weightAs(x), this.bias));
  }
  applyWeight(x: Tensor): Tensor {
    return noGrad(() => tidy(() => matmul(x, transpose(this.weightAs(x)))));
  }
  applyWeightTransposed(g: Tensor): Tensor {
    return noGrad(() => tidy(() => matmul(g, this.weightAs(g))));
  }
  /** the weight in x's dtype (a bfloat16 model called with float32 compute, or the reverse) */
  private weightAs(x: Tensor): Tensor {
    return this.weight.dtype === x.dtype ? this.weight : to(this.weight, x.dtype);
  }
}

/** Rows of a [num, dim] table looked up by integer ids (torch.nn.Embedding). */
export class Embedding extends Module {
  weight: Tensor;
  constructor(readonly num: number, readonly dim: number, opts: InitOpts & { paddingIdx?: number | null } = {}) {
    super();
    this.paddingIdx = opts.paddingIdx ?? null;
    this.weight = Parameter(normal([num, dim], 1, opts));
  }
  /** the row that gets no gradient (nn.Embedding's padding_idx) */
  readonly paddingIdx: number | null;
  forward(ids: Tensor): Tensor {
    return embedding(ids, this.weight, this.paddingIdx);
  }
}

/** x / rms(x) * (offset + weight) (LlamaRMSNorm; Gemma uses offset 1 with weights stored minus one). */
export class RMSNorm extends Module {
  weight: Tensor;
  constructor(readonly dim: number, readonly eps = 1e-6, readonly offset = 0, opts: InitOpts = {}) {
    super();
    this.weight = Parameter(offset ? zerosInit([dim], opts) : onesInit([dim], opts));
  }
  forward(x: Tensor): Tensor {
    return rmsNorm(x, this.weight, { eps: this.eps, offset: this.offset });
  }
}

/** (x - mean) / std * weight + bias over the last dim (torch.nn.LayerNorm). */
export class LayerNorm extends Module {
  weight: Tensor;
  bias: Tensor;
  constructor(readonly dim: number, readonly eps = 1e-5, opts: InitOpts = {}) {
    super();
    this.weight = Parameter(onesInit([dim], opts));
    this.bias = Parameter(zerosInit([dim], opts));
  }
  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps);
  }
}
