// Learning-rate schedules as pure functions of the step (0-based, before the update), the
// HF transformers shapes and DeepSpeed's WarmupLR / WarmupDecayLR / WarmupCosineLR.

export type Schedule = (step: number) => number;

/** lr constant, optionally after a linear warmup from 0. */
export const constant = (lr: number, warmup = 0): Schedule => (s) => (s < warmup ? (lr * s) / warmup : lr);

/** Linear warmup from 0, then linear decay to 0 at `total` (get_linear_schedule_with_warmup). */
export const linear = (lr: number, warmup: number, total: number): Schedule => (s) =>
  s < warmup ? (lr * s) / Math.max(1, warmup) : lr * Math.max(0, (total - s) / Math.max(1, total - warmup));

/** Linear warmup, then half a cosine to minLr at `total` (get_cosine_schedule_with_warmup with a floor). */
export const cosine = (lr: number, warmup: number, total: number, minLr = 0): Schedule => (s) => {
  if (s < warmup) return (lr * s) / Math.max(1, warmup);
  const p = Math.min(1, (s - warmup) / Math.max(1, total - warmup));
  return minLr + (lr - minLr) * 0.5 * (1 + Math.cos(Math.PI * p));
};

/** Warmup-stable-decay: linear warmup, constant, then linear decay over the last `decay` steps to minLr. */
export const wsd = (lr: number, warmup: number, total: number, decay: number, minLr = 0): Schedule => (s) => {
  if (s < warmup) return (lr * s) / Math.max(1, warmup);
  if (s < total - decay) return lr;
  return minLr + (lr - minLr) * Math.max(0, (total - s) / Math.max(1, decay));
};

export interface WarmupLRParams {
  warmup_min_lr?: number;
  warmup_max_lr?: number;
  warmup_num_steps?: number;
  warmup_type?: 'log' | 'linear';
}

/** DeepSpeed WarmupLR: min -> max over warmup_num_steps (log or linear), then max. */
export function warmupLR(p: WarmupLRParams): Schedule {
  const { warmup_min_lr: lo = 0, warmup_max_lr: hi = 0.001, warmup_num_steps: n = 1000, warmup_type: type = 'log' } = p;
  const steps = Math.max(2, n);
  return (s) => {
    if (s >= steps) return hi;
    const gamma = type === 'log' ? Math.log(s + 1) / Math.log(steps) : s / steps;
    return lo + (hi - lo) * gamma;
  };
}

/** DeepSpeed WarmupDecayLR: WarmupLR, then linear decay to 0 at total_num_steps. */
export function warmupDecayLR(p: WarmupLRParams & { total_num_steps: number }): Schedule {
  const warm = warmupLR(p);
  const steps = Math.max(2, p.warmup_num_steps ?? 1000);
  return (s) => (s < steps ? warm(s) : (p.warmup_max_lr ?? 0.001) * Math.max(0, (p.total_num_steps - s) / Math.max(1, p.total_num_steps - steps)));
}

/** DeepSpeed WarmupCosineLR: ratios of the optimizer's lr: warmup from warmup_min_ratio, cosine to cos_min_ratio. */
export function warmupCosineLR(lr: number, p: { total_num_steps: number; warmup_min_ratio?: number; warmup_num_steps?: number; cos_min_ratio?: number; warmup_type?: 'log' | 'linear' }): Schedule {
  const { warmup_min_ratio: w0 = 0, warmup_num_steps: n = 1000, cos_min_ratio: cmin = 0.0001, warmup_type: type = 'log' } = p;
  const steps = Math.max(2, n);
  return (s) => {
    if (s < steps) {
      const gamma = type === 'log' ? Math.log(s + 1) / Math.log(steps) : s / steps;
      return lr * (w0 + (1 - w0) * gamma);
    }
    const progress = Math.min(1, (s - steps) / Math.max(1, p.total_num_steps - steps));
    return lr * (cmin + (1 - cmin) * 0.5 * (1 + Math.cos(Math.PI * progress)));
  };
}
