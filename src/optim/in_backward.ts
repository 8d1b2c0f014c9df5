// Optimizer in backward (LOMO, Lv et al. 2023; PyTorch's register_post_accumulate_grad_hook
// recipe): every parameter is updated the moment backward has finished its gradient, and that
// gradient is freed right after, so a full fine-tuning step holds one parameter's gradient at a
// time instead of all of them. Each update is stepParam(), the arithmetic of the ordinary step,
// so in fp32 the weights equal the ordinary step's bit for bit. It needs every gradient final
// when its hook fires: no accumulation over micro-batches, and nothing that must see all
// gradients before the first update (global-norm clipping, the fp16 loss scaler's overflow check).
import type { Tensor } from '../tensor/tensor.js';
import { backendOf } from '../backend/index.js';
import { gradSquaredNorm, gradSum, squaredNormConsuming } from './clip.js';
import type { Optimizer } from './optimizer.js';

/** What one step(fn) did. */
export interface InBackwardResult {
  /** parameters updated during backward */
  updated: number;
  /** sum(g²) of each gradient seen, for the global norm (gradNorm's terms) */
  squaredNorms: Map<Tensor, number>;
  /** the first parameter whose gradient was not finite: it and every later one was not updated */
  nonFinite: Tensor | null;
}

export class OptimizerInBackward {
  private armed = false;
  private started = false;
  private updated = 0;
  private squaredNorms = new Map<Tensor, number>();
  private nonFinite: Tensor | null = null;
  private readonly removeHooks: (() => void)[];

  /**
   * Registers a gradient hook on every parameter of the optimizer. The hooks act only inside
   * step(fn); a backward outside it accumulates into .grad as usual. Hooks registered on a
   * parameter after this one see no gradient (this one frees it).
   * @example
   * const inBackward = new k.optim.OptimizerInBackward(new k.optim.AdamW(model.parameters()));
   * const r = inBackward.step(() => model.forward(batch).loss!.backward()); // updated, grads freed
   */
  constructor(readonly optimizer: Optimizer<{ lr: number }>) {
    this.removeHooks = optimizer.groups.flatMap((g) => g.params.map((p) => p.registerHook(() => this.onGrad(p))));
  }

  /**
   * Runs fn (a forward and one backward) with the hooks armed: each parameter is updated as its
   * gradient completes, and the step is counted (optimizer.beginStep) at the first update, so a
   * step whose backward never ran (a NaN loss caught before it) counts nothing.
   */
  step<T>(fn: () => T): { value: T } & InBackwardResult {
    if (this.armed) throw new Error('OptimizerInBackward.step: already inside a step (step() does not nest)');
    Object.assign(this, { armed: true, started: false, updated: 0, squaredNorms: new Map(), nonFinite: null });
    try {
      const value = fn();
      return { value, updated: this.updated, squaredNorms: this.squaredNorms, nonFinite: this.nonFinite };
    } finally {
      this.armed = false;
    }
  }

  private onGrad(p: Tensor): void {
    if (!this.armed) return;
    const grad = p.grad!;
    if (this.squaredNorms.has(p))
      throw new Error(`optimizer in backward: parameter ${p.name ? `'${p.name}' ` : ''}received a second gradient in one step after its update had run ` +
        '(used in two checkpointed regions, or backward ran twice); use the ordinary step (optimizerInBackward: false)');
    // A non-finite gradient stops the updates before its parameter. With the backend's sumSquares
    // the norm term is one read of the gradient before its update, and tells; without it, sum(g)
    // tells without a temporary and sum(g²) squares the gradient in place after the update.
    const oneRead = backendOf(grad).kernels.sumSquares !== undefined;
    let sq = oneRead ? gradSquaredNorm(grad) : NaN;
    if (!this.nonFinite && !Number.isFinite(oneRead ? sq : gradSum(grad))) this.nonFinite = p;
    if (!this.nonFinite) {
      if (!this.started) this.optimizer.beginStep();
      this.started = true;
      this.optimizer.stepParam(p);
      this.updated++;
    }
    if (!oneRead) sq = squaredNormConsuming(grad);
    this.squaredNorms.set(p, sq);
    // finite values whose float32 squares overflow (|g| > 1.8e19, the float32 path only): caught here, after their update
    if (!Number.isFinite(sq)) this.nonFinite ??= p;
    p.zeroGrad();
  }

  /** Removes the hooks. */
  dispose(): void {
    for (const remove of this.removeHooks) remove();
  }
}
