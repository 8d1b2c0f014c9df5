// How a ZeRO-3 unit runs so that releasing its parameters after forward never frees what backward
// needs: the unit's forward runs without recording (like activation checkpointing, autograd/
// checkpoint.ts), so no saved tensor holds a gathered weight; one tape node stands for the whole
// unit, and its backward gathers the parameters again, re-runs the forward with the tape on
// (restoring the RNG), backpropagates through it and hands the parameters' gradients to ZeRO
// before releasing them. The price is one more forward per unit (what full activation
// checkpointing costs); in exchange a unit holds nothing between its forward and its backward.
// The forward's last unit (the head) is the exception (runRecorded): its backward comes right
// after its forward, so it runs once, on the tape, gathered once for both.
import { recomputeLeaves, takeLeafGrads } from '../autograd/checkpoint.js';
import { runBackward } from '../autograd/engine.js';
import { record } from '../ops/dispatch.js';
import { isGradEnabled, noGrad, withGradMode } from '../tensor/grad_mode.js';
import { defaultGenerator } from '../tensor/rng.js';
import { tidy } from '../tensor/scope.js';
import { Tensor } from '../tensor/tensor.js';

/** What the region asks of ZeRO around the unit's two runs. */
export interface RegionHooks {
  /**
   * gather the unit's parameters into the module (forward: the layer order; backward: the reverse;
   * recorded: a forward whose tape is kept for backward, so its parameters' gradients are collected now)
   */
  gather(phase: 'forward' | 'backward' | 'recorded'): void;
  /** forward with grad: this use was recorded, its backward will come (a unit used twice counts two) */
  recorded?(): void;
  /** backward only, before release: the parameters' gradients are final */
  reduce(): void;
  /**
   * put the placeholders back and free the gathered buffers; `untilBackward`: after a recorded
   * forward, only the placeholders go back (the tape holds the views until the unit's backward)
   */
  release(untilBackward?: boolean): void;
}

type Args = unknown[];

/** The tensors among a call's arguments: top-level ones and the tensor fields of top-level plain objects (the layer context). */
function tensorsIn(args: Args): Tensor[] {
  const out: Tensor[] = [];
  for (const a of args) {
    if (a instanceof Tensor) out.push(a);
    else if (a && typeof a === 'object' && !Array.isArray(a)) for (const v of Object.values(a)) if (v instanceof Tensor) out.push(v);
  }
  return out;
}

/** The arguments with their tensors (in tensorsIn's order) replaced by `ts`. */
function withTensors(args: Args, ts: readonly Tensor[]): Args {
  let i = 0;
  return args.map((a) => {
    if (a instanceof Tensor) return ts[i++];
    if (a && typeof a === 'object' && !Array.isArray(a)) return Object.fromEntries(Object.entries(a).map(([k, v]) => [k, v instanceof Tensor ? ts[i++] : v]));
    return a;
  });
}

/** A unit's output: a tensor, or an object whose one tensor field is the output (a decoder layer's { hidden, routerLogits: null }). */
function outputOf(o: unknown, unit: string): { key: string | null; t: Tensor } {
  if (o instanceof Tensor) return { key: null, t: o };
  const fields = o && typeof o === 'object' ? Object.entries(o).filter(([, v]) => v !== null && v !== undefined) : [];
  if (fields.length !== 1 || !(fields[0][1] instanceof Tensor))
    throw new Error(`ZeRO stage 3: unit ${unit} returned ${fields.length} values (${fields.map(([k]) => k).join(', ')}); a unit must return one tensor with gradients on (train a CausalLM with returnLogits: false, as the trainer does; MoE layers' router logits are not supported at stage 3)`);
  return { key: fields[0][0], t: fields[0][1] };
}

/**
 * Runs `forward(...args)` as one gathered unit (see the file comment); without grad mode it is
 * gather, run, release. `recorded`: for a unit whose backward comes right after its forward (the
 * head: the forward's last unit), the forward runs on the tape with the gathered parameters and
 * keeps them until its backward (see runRecorded) instead of re-gathering and recomputing.
 */
export function runGathered(unit: string, forward: (...a: Args) => unknown, args: Args, hooks: RegionHooks, o: { recorded?: boolean } = {}): unknown {
  if (o.recorded && isGradEnabled() && tensorsIn(args).some((x) => x.requiresGrad)) return runRecorded(unit, forward, args, hooks);
  if (!isGradEnabled()) {
    hooks.gather('forward');
    try {
      return forward(...args);
    } finally {
      hooks.release();
    }
  }
  const inputs = tensorsIn(args);
  const rng = defaultGenerator.getState();
  hooks.gather('forward');
  let shape: { key: string | null; rest: unknown };
  let y: Tensor;
  try {
    y = noGrad(() => tidy(() => {
      const o = forward(...args);
      const { key, t } = outputOf(o, unit);
      shape = { key, rest: o };
      return t;
    }));
  } finally {
    hooks.release();
  }
  const held = inputs.map((x) => x.alias({ untracked: true }));
  const out = record(`zero3 ${unit}`, y, inputs, (g) => {
    const detached = recomputeLeaves(held, inputs);
    const now = defaultGenerator.getState();
    hooks.gather('backward');
    try {
      defaultGenerator.setState(rng);
      const again = withGradMode(true, () => tidy(() => outputOf(forward(...withTensors(args, detached)), unit).t));
      defaultGenerator.setState(now);
      if (again.requiresGrad) runBackward([again], [g]);
      again.dispose();
      hooks.reduce();
    } finally {
      defaultGenerator.setState(now);
      hooks.release();
    }
    return takeLeafGrads(detached);
  }, held, { always: true });
  hooks.recorded?.();
  const { key, rest } = shape!;
  return key === null ? out : { ...(rest as object), [key]: out };
}

/**
 * The unit's forward on the tape while gathered: its nodes hold what their backward needs (views of
 * the gathered buffers), so the unit is released (and its gradient handed to ZeRO) only after its
 * backward. That moment is marked by an identity on each input that needs a gradient: the
 * identity's backward runs once every use of its output, the whole unit, has been backpropagated.
 */
function runRecorded(unit: string, forward: (...a: Args) => unknown, args: Args, hooks: RegionHooks): unknown {
  const inputs = tensorsIn(args);
  hooks.gather('recorded');
  hooks.recorded?.();
  let pending = inputs.filter((x) => x.requiresGrad).length;
  const done = (): void => {
    if (--pending > 0) return;
    try {
      hooks.reduce();
    } finally {
      hooks.release();
    }
  };
  let out: unknown;
  try {
    const marked = inputs.map((x) => (x.requiresGrad ? record(`zero3 ${unit} done`, x.alias(), [x], (g) => (done(), [g.alias()])) : x));
    out = forward(...withTensors(args, marked));
  } catch (e) {
    hooks.release();
    throw e;
  }
  hooks.release(true); // the placeholders back in the module; the tape keeps the views it saved
  return out;
}
