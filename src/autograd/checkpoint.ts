// Activation checkpointing (Chen et al. 2016, torch.utils.checkpoint): the region runs without
// recording, so only its inputs and output stay alive; backward re-runs it with the tape on
// (restoring the RNG so dropout draws repeat) and backpropagates through the recomputation.
import { record } from '../ops/dispatch.js';
import { isGradEnabled, noGrad, withGradMode } from '../tensor/grad_mode.js';
import { defaultGenerator } from '../tensor/rng.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { runBackward } from './engine.js';

/**
 * Runs fn(...inputs) keeping none of its activations; they are recomputed during backward.
 * Parameters used inside fn receive their gradients during that recomputation.
 * @example const h = k.checkpoint((x) => block.forward(x), h0)
 */
export function checkpoint(fn: (...inputs: Tensor[]) => Tensor, ...inputs: Tensor[]): Tensor {
  if (!isGradEnabled()) return fn(...inputs);
  const rng = defaultGenerator.getState();
  const out = noGrad(() => tidy(() => fn(...inputs)));
  const held = inputs.map((x) => x.alias({ untracked: true }));
  return record('checkpoint', out, inputs, (g) => {
    const detached = recomputeLeaves(held, inputs);
    const now = defaultGenerator.getState();
    defaultGenerator.setState(rng);
    let y: Tensor;
    try {
      y = withGradMode(true, () => tidy(() => fn(...detached)));
    } finally {
      defaultGenerator.setState(now);
    }
    if (y.requiresGrad) runBackward([y], [g]);
    y.dispose();
    return takeLeafGrads(detached);
  }, held, { always: true });
}

/** Fresh leaves over a region's held inputs for its recomputation (requiresGrad as the originals'). */
export function recomputeLeaves(held: readonly Tensor[], inputs: readonly Tensor[]): Tensor[] {
  return held.map((x, i) => {
    const d = x.alias({ untracked: true });
    d.requiresGrad = inputs[i].requiresGrad;
    return d;
  });
}

/** The recomputation's input gradients (what the region's node sends on); frees the leaves. */
export function takeLeafGrads(leaves: readonly Tensor[]): (Tensor | null)[] {
  return leaves.map((d) => {
    const grad = d.grad;
    d.grad = null;
    d.dispose();
    return grad;
  });
}
