// AdamW (Loshchilov & Hutter 2019) with PyTorch's defaults and bias correction; one fused kernel
// call per parameter group updates every weight and both moments in place (on a GPU one launch).
import { backendOf } from '../backend/index.js';
import type { AdamWTensors } from '../backend/kernels.js';
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

  /** One kernel call per group and backend with every parameter that has a gradient. */
  override step(): void {
    this.beginStep();
    for (const g of this.groups) {
      const byBackend = new Map<string, Tensor[]>();
      for (const p of g.params) if (p.grad) byBackend.set(p.backendName, [...(byBackend.get(p.backendName) ?? []), p]);
      for (const ps of byBackend.values()) this.updateAll(ps, g.options);
    }
  }

  protected update(p: Tensor, _grad: Tensor, h: AdamWOptions): void {
    this.updateAll([p], h);
  }

  private updateAll(ps: Tensor[], h: AdamWOptions): void {
    const temps: Tensor[] = [];
    const tensors: AdamWTensors[] = ps.map((p) => {
      if (p.dtype !== 'float32' || !p.isContiguous())
        throw new Error(`AdamW: parameters must be contiguous float32 (master weights), got ${p.dtype}`);
      const s = this.stateOf(p, ['exp_avg', 'exp_avg_sq']);
      const grad = p.grad!;
      const g = grad.dtype === 'float32' && grad.isContiguous() ? grad : contiguous(to(grad, 'float32'));
      if (g !== grad) temps.push(g);
      return { param: p, grad: g, expAvg: s.exp_avg, expAvgSq: s.exp_avg_sq };
    });
    const t = this.stepCount;
    const [b1, b2] = h.betas;
    backendOf(ps[0]).kernels.adamw(tensors, {
      lr: h.lr, beta1: b1, beta2: b2, eps: h.eps, weightDecay: h.weightDecay, bc1: 1 - b1 ** t, bc2: 1 - b2 ** t,
    });
    for (const g of temps) g.dispose();
  }
}
