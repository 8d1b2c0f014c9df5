// AdamW (Loshchilov & Hutter 2019) with PyTorch's defaults and bias correction; one fused
// kernel call per parameter updates the weights and both moments in place.
import { backendOf } from '../backend/index.js';
import { contiguous } from '../ops/view.js';
import { to } from '../ops/elementwise.js';
import type { Tensor } from '../tensor/tensor.js';
import { Optimizer, type ParamGroup } from './optimizer.js';

export interface AdamWOptions {
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
}

export class AdamW extends Optimizer<AdamWOptions> {
  /** @example new k.optim.AdamW(model.parameters(), { lr: 1e-3 }) */
  constructor(params: Tensor[] | ParamGroup<AdamWOptions>[], opts: Partial<AdamWOptions> = {}) {
    super(params, { lr: 1e-3, betas: [0.9, 0.999], eps: 1e-8, weightDecay: 0.01, ...opts });
  }

  protected update(p: Tensor, grad: Tensor, h: AdamWOptions): void {
    if (p.dtype !== 'float32' || !p.isContiguous())
      throw new Error(`AdamW: parameters must be contiguous float32 (master weights), got ${p.dtype}`);
    const s = this.stateOf(p, ['exp_avg', 'exp_avg_sq']);
    const g = grad.dtype === 'float32' && grad.isContiguous() ? grad : contiguous(to(grad, 'float32'));
    const t = this.stepCount;
    const [b1, b2] = h.betas;
    backendOf(p).kernels.adamw(p, g, s.exp_avg, s.exp_avg_sq, {
      lr: h.lr, beta1: b1, beta2: b2, eps: h.eps, weightDecay: h.weightDecay, bc1: 1 - b1 ** t, bc2: 1 - b2 ** t,
    });
    if (g !== grad) g.dispose();
  }
}
