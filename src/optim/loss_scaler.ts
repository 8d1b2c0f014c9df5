// Loss scaling for fp16 training with DeepSpeed's semantics (runtime/fp16/loss_scaler.py):
// dynamic: start at 2^initial_scale_power; an overflow skips the step and, once `hysteresis`
// overflows have been absorbed, divides the scale by 2 (not below min_loss_scale); every
// loss_scale_window clean steps since the last overflow double it. A static scale never changes.
// An overflow that would halve a scale already at min_loss_scale is an error, as in DeepSpeed:
// the run has diverged (NaN loss), and skipping every step from then on would hide it.

export interface LossScalerOptions {
  /** > 0: a static scale; 0: dynamic (DeepSpeed's loss_scale) */
  lossScale?: number;
  initialScalePower?: number;
  lossScaleWindow?: number;
  hysteresis?: number;
  minLossScale?: number;
  /** restore full hysteresis after every clean step (DeepSpeed's consecutive_hysteresis) */
  consecutiveHysteresis?: boolean;
}

export class LossScaler {
  scale: number;
  readonly dynamic: boolean;
  private readonly window: number;
  private readonly hysteresis: number;
  private readonly minScale: number;
  private readonly consecutive: boolean;
  private curHysteresis: number;
  private iter = 0;
  private lastOverflowIter = -1;

  constructor(o: LossScalerOptions = {}) {
    this.dynamic = !(o.lossScale && o.lossScale > 0);
    this.scale = this.dynamic ? 2 ** (o.initialScalePower ?? 16) : o.lossScale!;
    this.window = o.lossScaleWindow ?? 1000;
    this.hysteresis = o.hysteresis ?? 2;
    this.minScale = o.minLossScale ?? 1;
    this.consecutive = o.consecutiveHysteresis ?? false;
    this.curHysteresis = this.hysteresis;
  }

  /** Records one step's outcome; returns true when the optimizer step must be skipped. */
  update(overflow: boolean, step = this.iter + 1): boolean {
    if (!this.dynamic) return overflow;
    if (overflow) {
      if (this.hysteresis === 1 || this.curHysteresis === 1) {
        if (this.scale <= this.minScale) throw new Error(`step ${step}: the gradients overflow at the minimum loss scale ${this.minScale} (the loss diverged); stopping`);
        this.scale = Math.max(this.scale / 2, this.minScale);
      }
      else this.curHysteresis--;
      this.lastOverflowIter = this.iter;
    } else {
      if (this.consecutive) this.curHysteresis = this.hysteresis;
      if ((this.iter - this.lastOverflowIter) % this.window === 0) {
        if (!this.consecutive) this.curHysteresis = this.hysteresis;
        this.scale *= 2;
      }
    }
    this.iter++;
    return overflow;
  }

  stateDict(): { scale: number; iter: number; lastOverflowIter: number; curHysteresis: number } {
    return { scale: this.scale, iter: this.iter, lastOverflowIter: this.lastOverflowIter, curHysteresis: this.curHysteresis };
  }

  loadStateDict(s: ReturnType<LossScaler['stateDict']>): void {
    Object.assign(this, { scale: s.scale, iter: s.iter, lastOverflowIter: s.lastOverflowIter, curHysteresis: s.curHysteresis });
  }
}
