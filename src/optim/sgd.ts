// SGD with momentum, dampening, Nesterov and coupled weight decay, and Lion (Chen et al. 2023),
// as PyTorch defines them; updates run in place through the elementwise kernels.
import { backendOf } from '../backend/index.js';
import { add, mul, unary } from '../ops/elementwise.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { Optimizer, type ParamGroup } from './optimizer.js';

/** dst <- src elementwise (same shape, contiguous dst). */
function assign(dst: Tensor, src: Tensor): void {
  backendOf(dst).kernels.copy(src, dst);
}

export interface SgdOptions {
  lr: number;
  momentum: number;
  dampening: number;
  nesterov: boolean;
  weightDecay: number;
}

export class SGD extends Optimizer<SgdOptions> {
  constructor(params: Tensor[] | ParamGroup<SgdOptions>[], opts: Partial<SgdOptions> = {}) {
    super(params, { lr: 1e-3, momentum: 0, dampening: 0, nesterov: false, weightDecay: 0, ...opts });
  }

  protected update(p: Tensor, grad: Tensor, h: SgdOptions): void {
    noGrad(() => tidy(() => {
      let g = h.weightDecay ? add(grad, mul(p, h.weightDecay)) : grad;
      if (h.momentum) {
        const fresh = !this.state.has(p);
        const buf = this.stateOf(p, ['momentum_buffer']).momentum_buffer;
        // first step: buf = g; then buf = momentum buf + (1 - dampening) g
        assign(buf, fresh ? g : add(mul(buf, h.momentum), mul(g, 1 - h.dampening)));
        g = h.nesterov ? add(g, mul(buf, h.momentum)) : buf;
      }
      assign(p, add(p, mul(g, -h.lr)));
    }));
  }
}

export interface LionOptions {
  lr: number;
  betas: [number, number];
  weightDecay: number;
}

export class Lion extends Optimizer<LionOptions> {
  constructor(params: Tensor[] | ParamGroup<LionOptions>[], opts: Partial<LionOptions> = {}) {
    super(params, { lr: 1e-4, betas: [0.9, 0.99], weightDecay: 0, ...opts });
  }

  /** p = p (1 - lr wd) - lr sign(b1 m + (1 - b1) g); m = b2 m + (1 - b2) g */
  protected update(p: Tensor, grad: Tensor, h: LionOptions): void {
    const [b1, b2] = h.betas;
    noGrad(() => tidy(() => {
      const m = this.stateOf(p, ['exp_avg']).exp_avg;
      const c = add(mul(m, b1), mul(grad, 1 - b1));
      assign(p, add(mul(p, 1 - h.lr * h.weightDecay), mul(unary('sign', c), -h.lr)));
      assign(m, add(mul(m, b2), mul(grad, 1 - b2)));
    }));
  }
}
