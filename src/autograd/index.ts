// Autograd's public face: Tensor.backward(), zeroGrad, detach, and the grad-mode scopes.
import { Tensor } from '../tensor/tensor.js';
import { type BackwardOptions, runBackward } from './engine.js';

export { checkpoint } from './checkpoint.js';
export { runBackward, type BackwardOptions } from './engine.js';
export { isGradEnabled, noGrad, withGradMode } from '../tensor/grad_mode.js';

declare module '../tensor/tensor.js' {
  interface Tensor {
    /** Backpropagates from this tensor (a scalar, or with an explicit gradient of its shape). */
    backward(grad?: Tensor, opts?: BackwardOptions): void;
    /** Frees this tensor's .grad (the next backward starts from zero). */
    zeroGrad(): void;
    /** A new handle on the same elements, cut from the tape. */
    detach(): Tensor;
  }
}

Tensor.prototype.backward = function (this: Tensor, grad?: Tensor, opts?: BackwardOptions): void {
  runBackward([this], [grad], opts);
};

Tensor.prototype.zeroGrad = function (this: Tensor): void {
  this.grad?.dispose();
  this.grad = null;
};

Tensor.prototype.detach = function (this: Tensor): Tensor {
  return this.alias();
};
