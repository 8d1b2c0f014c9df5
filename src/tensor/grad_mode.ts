// Whether ops record the autograd tape. Lives here (not in autograd/) because every op reads it.

let enabled = true;

export const isGradEnabled = (): boolean => enabled;

/** Runs fn without recording gradients (torch.no_grad). Returns fn's result. */
export function noGrad<T>(fn: () => T): T {
  return withGradMode(false, fn);
}

/** Runs fn with recording switched on or off (torch.set_grad_enabled as a scope). */
export function withGradMode<T>(on: boolean, fn: () => T): T {
  const prev = enabled;
  enabled = on;
  try {
    return fn();
  } finally {
    enabled = prev;
  }
}
