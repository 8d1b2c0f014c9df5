// How a ZeRO-3 unit runs (DeepSpeed's pre- and post-backward hooks around a module): the unit's
// forward runs on the tape with its parameters gathered, so its nodes save what their backward
// needs (the activations, and views of the gathered buffers). After the forward ZeRO evicts the
// buffers' bytes (Storage.evict: the views stay, with no memory behind them) and puts the
// placeholders back. Two marks on the tape bracket the unit's backward: an identity on its output,
// whose backward runs before any node of the unit (it gathers the unit again, into the same
// storage, and prefetches the one before), and an identity on each input that needs a gradient,
// whose backward runs once every node of the unit has (the gradients are final: ZeRO
// reduce-scatters them and releases the unit). A unit none of whose inputs needs a gradient (the
// first layer under LoRA, a trained embedding lookup) is the last of the tape to run: it is
// finished by a callback at the end of the backward pass (queueCallback), which also finishes any
// unit whose input marks did not all run (an input that needs a gradient but does not reach the
// output).
//
// A unit whose backward comes right after its forward keeps its bytes instead: the forward's last
// unit (the head), and any unit recorded while a backward runs (a checkpointed layer's
// recomputation, whose backward follows at once), so each is gathered once for both.
import { isBackwardRunning, queueCallback } from '../autograd/engine.js';
import { record } from '../ops/dispatch.js';
import { isGradEnabled } from '../tensor/grad_mode.js';
import { Tensor } from '../tensor/tensor.js';

/** What the region asks of ZeRO around the unit. */
export interface RegionHooks {
  /**
   * gather the unit's parameters into the module (and prefetch the unit after it in that order:
   * forward, the next call; backward, or a forward while a backward runs, the previous one)
   */
  gather(phase: 'forward' | 'backward'): void;
  /** the forward was recorded: its backward will come (a unit used twice counts two) */
  recorded?(): void;
  /** the unit's backward is done: its parameters' gradients are final */
  reduce(): void;
  /**
   * the placeholders back into the module; the bytes go too (evicted, when a recorded use still
   * waits for its backward; else freed), unless `untilBackward`: the backward comes next and uses them
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
 * Runs `forward(...args)` as one gathered unit (see the file comment); without grad mode, or when
 * nothing of it needs a gradient, it is gather, run, release. `backwardNext`: the unit's backward
 * follows its forward at once (the forward's last unit), so it keeps its bytes until then.
 */
export function runGathered(unit: string, forward: (...a: Args) => unknown, args: Args, hooks: RegionHooks, o: { backwardNext?: boolean } = {}): unknown {
  hooks.gather('forward');
  if (!isGradEnabled()) {
    try {
      return forward(...args);
    } finally {
      hooks.release();
    }
  }
  const inputs = tensorsIn(args);
  let pending = inputs.filter((x) => x.requiresGrad).length;
  let finished = false;
  const done = (): void => {
    if (finished) return;
    finished = true;
    try {
      hooks.reduce();
    } finally {
      hooks.release();
    }
  };
  let key: string | null;
  let y: Tensor;
  let out: unknown;
  try {
    // the post-backward mark: its backward runs after every node of the unit that uses the input
    const marked = inputs.map((x) => (x.requiresGrad ? record(`zero3 ${unit} done`, x.alias(), [x], (g) => (--pending === 0 && done(), [g.alias()])) : x));
    out = forward(...withTensors(args, marked));
    ({ key, t: y } = outputOf(out, unit));
  } catch (e) {
    hooks.release();
    throw e;
  }
  if (!y.requiresGrad) {
    hooks.release();
    return out;
  }
  hooks.recorded?.();
  // the pre-backward mark: its backward runs before any node of the unit; at the pass's end the unit is
  // finished if its input marks have not done it (none needs a gradient, or one never ran)
  const marked = record(`zero3 ${unit} gather`, y.alias(), [y], (g) => {
    hooks.gather('backward');
    queueCallback(done);
    return [g.alias()];
  });
  hooks.release(o.backwardNext === true || isBackwardRunning());
  return key === null ? marked : { ...(out as object), [key]: marked };
}
