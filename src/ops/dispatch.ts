// What every op needs: output allocation on the inputs' backend, input checks, and recording
// a node on the autograd tape with the tensors its backward will read.
import { type Backend, backendOf, defaultBackend, getBackend } from '../backend/index.js';
import type { DType } from '../tensor/dtype.js';
import { isGradEnabled } from '../tensor/grad_mode.js';
import { Layout, type Shape, numel, shapeStr } from '../tensor/layout.js';
import { currentTag, type MemoryTag } from '../tensor/memory.js';
import { type Edge, type GradFn, Tensor } from '../tensor/tensor.js';
import { profiling, timedBackward } from '../profile/recorder.js';

export interface EmptyOpts {
  backend?: Backend | string;
  tag?: MemoryTag;
  zero?: boolean;
}

export function resolveBackend(b: Backend | string | undefined): Backend {
  if (b === undefined) return defaultBackend();
  return typeof b === 'string' ? getBackend(b) : b;
}

/** A new contiguous tensor (contents undefined unless zero). */
export function empty(shape: Shape, dtype: DType, opts: EmptyOpts = {}): Tensor {
  for (const s of shape)
    if (!Number.isInteger(s) || s < 0) throw new Error(`empty: invalid shape ${shapeStr(shape)}`);
  const backend = resolveBackend(opts.backend);
  const storage = backend.alloc(dtype, numel(shape), opts.tag ?? currentTag('other'), opts.zero ?? false);
  return new Tensor(storage, new Layout([...shape]));
}

/** An output for an op on `like`'s backend. */
export const emptyLike = (like: Tensor, shape: Shape = like.shape, dtype: DType = like.dtype): Tensor =>
  empty(shape, dtype, { backend: backendOf(like) });

/** Checks inputs are live and on one backend; returns that backend. */
export function inputs(op: string, ...ts: (Tensor | null | undefined)[]): Backend {
  let name: string | null = null;
  for (const t of ts) {
    if (!t) continue;
    t.assertLive(op);
    if (name === null) name = t.backendName;
    else if (t.backendName !== name)
      throw new Error(`${op}: tensors are on different backends ('${name}' and '${t.backendName}'); move one with .to()`);
  }
  return name === null ? defaultBackend() : getBackend(name);
}

let seq = 0;

/** True when an op on these inputs must record a tape node. */
export const needsGrad = (...ts: (Tensor | null | undefined)[]): boolean =>
  isGradEnabled() && ts.some((t) => t?.requiresGrad);

/** A saved-for-backward handle: shares storage and outlives the caller's scope. */
export const save = (t: Tensor): Tensor => t.alias({ untracked: true });

/**
 * True when t is the only handle on its whole storage, contiguous: a buffer nothing else can
 * read, so an op may overwrite it (a gradient autograd handed to backward, an op's own copy).
 * Saved tensors, aliases, views and user-held tensors all add a reference, so they never qualify.
 */
export const ownsStorage = (t: Tensor): boolean =>
  t.storage.refCount === 1 && t.layout.offset === 0 && t.numel === t.storage.numel && t.isContiguous();

/** Fused ops with in-place paths take this; inPlace false is the out-of-place reference tests compare with. */
export interface InPlaceOpts {
  /** default true */
  inPlace?: boolean;
}

function edgeOf(t: Tensor | null | undefined): Edge | null {
  if (!t || !t.requiresGrad) return null;
  if (t.gradFn) return { kind: 'fn', fn: t.gradFn };
  return { kind: 'leaf', leaf: t };
}

/**
 * Records out = op(ins) on the tape when any input requires grad. `backward` maps d(out) to one
 * gradient per input (null = none). `saved` are the handles backward reads; they are disposed
 * once it has run. `always` records even when no input requires grad (checkpoint regions whose
 * parameters are captured by closure; the node is GradFn.opaque). Returns out.
 */
/**
 * GradFn.addInto around an op's own, with backward's released check. Untimed by the op table's
 * timer (backward keeps the one timer branch): it adds a few rows, next to backward's [V, D] of zeros.
 */
function addIntoOf(name: string, f: (dst: Tensor, g: Tensor) => boolean, released: () => boolean): (dst: Tensor, g: Tensor) => boolean {
  return (dst, g) => {
    if (released()) throw new Error(`${name} backward: its saved tensors were freed by an earlier backward() (pass retainGraph to backward twice)`);
    return f(dst, g);
  };
}

export function record(
  name: string,
  out: Tensor,
  ins: readonly (Tensor | null | undefined)[],
  backward: (g: Tensor) => (Tensor | null)[],
  saved: Tensor[] = [],
  opts: { always?: boolean; addInto?: (dst: Tensor, g: Tensor) => boolean } = {},
): Tensor {
  if (!(opts.always ? isGradEnabled() : needsGrad(...ins))) {
    for (const s of saved) s.dispose();
    return out;
  }
  let released = false;
  let refs = 0;
  const next = ins.map(edgeOf);
  for (const e of next) if (e?.kind === 'fn') e.fn.retain();
  const fn: GradFn = {
    name,
    seq: seq++,
    next,
    backward(g) {
      if (released)
        throw new Error(`${name} backward: its saved tensors were freed by an earlier backward() (pass retainGraph to backward twice)`);
      return profiling ? timedBackward(name, () => backward(g)) : backward(g); // k.profile: one branch when off
    },
    ...(opts.addInto ? { addInto: addIntoOf(name, opts.addInto, () => released) } : {}),
    ...(opts.always ? { opaque: true } : {}),
    release() {
      if (released) return;
      released = true;
      for (const s of saved) s.dispose();
      saved.length = 0;
    },
    get released() {
      return released;
    },
    retain() {
      refs++;
    },
    unref() {
      if (--refs > 0) return;
      fn.release();
      for (const e of next) if (e?.kind === 'fn') e.fn.unref();
    },
  };
  out.setGradFn(fn);
  // what the tape produces is activation memory (inputs keep their own tags: param, other, ...)
  if (out.storage.tag === 'other') out.storage.tag = 'activation';
  return out;
}
