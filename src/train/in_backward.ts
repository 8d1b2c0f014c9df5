// When the Trainer may update parameters inside backward (TrainerOptions.optimizerInBackward):
// only when every gradient is final as it completes and nothing needs all of them first. Clipping
// by the global norm is not approximated per parameter (LOMO's and torch's recipes either clip
// each gradient alone, which changes the result, or run backward twice): it falls back, or with
// `true` it is an error, as are gradient accumulation, the fp16 loss scaler and data-parallel ranks
// (each update needs the gradient summed over ranks). `kestrel train` defaults to 'auto'.
import type { TrainerOptions } from './trainer.js';

/** The options that decide it; worldSize: the data-parallel ranks (1 or absent: one process). */
export type InBackwardOptions = Pick<TrainerOptions, 'optimizerInBackward' | 'gradAccum' | 'clip' | 'dtype'> & { worldSize?: number };

/** Why optimizer-in-backward cannot run with these options, or null when it can. */
export function inBackwardBlocker(o: Omit<InBackwardOptions, 'optimizerInBackward'>): string | null {
  if ((o.worldSize ?? 1) > 1) return `${o.worldSize} data-parallel ranks (each update needs the gradient summed over ranks)`;
  if ((o.gradAccum ?? 1) > 1) return `gradAccum ${o.gradAccum} (each update needs the gradient summed over every micro-batch)`;
  if (o.clip) return `clip ${o.clip} (clipping by the global norm needs every gradient before the first update)`;
  if (o.dtype === 'fp16') return "dtype 'fp16' (the loss scaler's overflow check needs every gradient before the first update)";
  return null;
}

/**
 * true: on (an error when the options block it); 'auto': on when nothing blocks it, else the
 * ordinary step; false (the default): the ordinary step.
 * @example useOptimizerInBackward({ optimizerInBackward: 'auto', gradAccum: 1, clip: 0 }) // true
 */
export function useOptimizerInBackward(o: InBackwardOptions): boolean {
  const mode = o.optimizerInBackward ?? false;
  if (!mode) return false;
  const blocker = inBackwardBlocker(o);
  if (blocker && mode === true)
    throw new Error(`Trainer: optimizerInBackward: true cannot run with ${blocker}; use 'auto' to fall back to the ordinary step there, or change that option`);
  return !blocker;
}
