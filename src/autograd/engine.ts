// Reverse-mode engine. Walks the tape from the roots in reverse creation order (a node runs once
// every consumer has sent its gradient), frees each node's saved tensors right after it runs,
// accumulates into leaves' .grad and fires their hooks once a leaf's gradient is final.
import { backendOf } from '../backend/index.js';
import { ones } from '../ops/creation.js';
import { add, halfDirect } from '../ops/elementwise.js';
import { clone } from '../ops/view.js';
import { ownsStorage } from '../ops/dispatch.js';
import { noGrad } from '../tensor/grad_mode.js';
import { sameShape, shapeStr } from '../tensor/layout.js';
import { keep, tidy } from '../tensor/scope.js';
import type { GradFn, Tensor } from '../tensor/tensor.js';

export interface BackwardOptions {
  /** keep saved tensors so backward can run through the graph again */
  retainGraph?: boolean;
}

/**
 * Counts, for every node and leaf reachable from the roots, how many gradients it will receive;
 * opaque: some node reaches leaves of its own (GradFn.opaque), so `leaves` may not be all.
 */
function dependencies(roots: GradFn[]): { nodes: Map<GradFn, number>; leaves: Map<Tensor, number>; opaque: boolean } {
  const nodes = new Map<GradFn, number>();
  const leaves = new Map<Tensor, number>();
  const stack = [...roots];
  const seen = new Set<GradFn>(roots);
  let opaque = false;
  while (stack.length) {
    const fn = stack.pop()!;
    opaque ||= fn.opaque === true;
    for (const e of fn.next) {
      if (!e) continue;
      if (e.kind === 'leaf') leaves.set(e.leaf, (leaves.get(e.leaf) ?? 0) + 1);
      else {
        nodes.set(e.fn, (nodes.get(e.fn) ?? 0) + 1);
        if (!seen.has(e.fn)) {
          seen.add(e.fn);
          stack.push(e.fn);
        }
      }
    }
  }
  return { nodes, leaves, opaque };
}

/**
 * Sums two gradients we own into one (disposing both); into a's buffer when nothing else holds it
 * and the kernel can add it directly (half-precision adds go through the op, which upcasts, unless
 * the backend's kernels take half operands).
 */
function sumGrads(a: Tensor | undefined, b: Tensor): Tensor {
  if (!a) return b;
  const direct = a.dtype === 'float32' || a.dtype === 'float64' || halfDirect(a);
  if (ownsStorage(a) && a.dtype === b.dtype && direct && sameShape(a.shape, b.shape)) {
    backendOf(a).kernels.binary('add', a, b, a); // elementwise in place is safe: same index in and out
    b.dispose();
    return a;
  }
  const s = add(a, b);
  a.dispose();
  b.dispose();
  return s;
}

/**
 * The leaf gradient a node can add into in place (GradFn.addInto): its one input is a leaf whose
 * gradient from its other uses is already summed and is a buffer nothing else reads, of the same
 * dtype; else null, and the node's backward runs as usual.
 */
function addIntoTarget(fn: GradFn, leafGrads: Map<Tensor, Tensor>): { leaf: Tensor; grad: Tensor } | null {
  const edge = fn.next.length === 1 ? fn.next[0] : null;
  if (!fn.addInto || edge?.kind !== 'leaf') return null;
  const grad = leafGrads.get(edge.leaf);
  if (!grad || !ownsStorage(grad) || grad.dtype !== edge.leaf.dtype || !sameShape(grad.shape, edge.leaf.shape)) return null;
  return { leaf: edge.leaf, grad };
}

/** Moves a finished gradient into leaf.grad, in place when a .grad already exists. */
function accumulateLeaf(leaf: Tensor, g: Tensor): void {
  if (!sameShape(g.shape, leaf.shape))
    throw new Error(`backward: gradient ${shapeStr(g.shape)} does not match tensor ${shapeStr(leaf.shape)}${leaf.name ? ` '${leaf.name}'` : ''}`);
  const grad = leaf.grad;
  if (grad && !grad.isDisposed) {
    backendOf(grad).kernels.binary('add', grad, g, grad); // elementwise in place is safe: same index in and out
    g.dispose();
  } else {
    // own a fresh contiguous buffer: g may be a view of something shared (an expand of a scalar)
    const owned = g.isContiguous() && g.storage.refCount === 1 && g.layout.offset === 0 && g.numel === g.storage.numel && g.dtype === leaf.dtype;
    leaf.grad = owned ? g : clone(g);
    if (!owned) g.dispose();
    leaf.grad.storage.tag = 'grad';
    keep(leaf.grad);
  }
  // a hook may consume the gradient (optimizer in backward updates the parameter and frees
  // .grad): the hooks after it have nothing to see
  for (const hook of [...leaf.hooks]) {
    if (!leaf.grad) break;
    hook(leaf.grad);
  }
}

/** A max-heap by seq: later nodes first, so every consumer runs before its producer. */
class ReadyQueue {
  private items: GradFn[] = [];
  push(fn: GradFn): void {
    this.items.push(fn);
    let i = this.items.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.items[p].seq >= this.items[i].seq) break;
      [this.items[p], this.items[i]] = [this.items[i], this.items[p]];
      i = p;
    }
  }
  pop(): GradFn | undefined {
    const top = this.items[0];
    const last = this.items.pop();
    if (this.items.length && last) {
      this.items[0] = last;
      let i = 0;
      for (;;) {
        const [l, r] = [2 * i + 1, 2 * i + 2];
        let m = i;
        if (l < this.items.length && this.items[l].seq > this.items[m].seq) m = l;
        if (r < this.items.length && this.items[r].seq > this.items[m].seq) m = r;
        if (m === i) break;
        [this.items[m], this.items[i]] = [this.items[i], this.items[m]];
        i = m;
      }
    }
    return top;
  }
}

/** Called at the start of the next outermost backward pass (see onNextBackward), then dropped. */
let nextBackward: ((reached: ReadonlySet<Tensor> | null) => void)[] = [];

/**
 * Calls fn once, as the next outermost backward pass starts (not a recomputation's inside it), with
 * the leaves its graph reaches, or null where a node reaches leaves the graph does not show (a
 * checkpointed region): what torch's DDP learns from its graph walk to mark the parameters unused
 * this step (find_unused_parameters). Returns a function that cancels it.
 */
export function onNextBackward(fn: (reached: ReadonlySet<Tensor> | null) => void): () => void {
  nextBackward.push(fn);
  return () => void (nextBackward = nextBackward.filter((f) => f !== fn));
}

/** Per running backward (a recomputation's backward runs inside another's): the callbacks queued for its end. */
const running: (() => void)[][] = [];

/** True while a backward pass runs (a forward recorded now, in a recomputation, is backpropagated before that pass ends). */
export const isBackwardRunning = (): boolean => running.length > 0;

/**
 * Runs fn when the backward pass now running has processed its last node (PyTorch's
 * Variable._execution_engine.queue_callback, which FSDP and DeepSpeed use to finish a step's
 * gradients): for work that must wait until nothing of the tape can still need it.
 */
export function queueCallback(fn: () => void): void {
  if (!running.length) throw new Error('queueCallback: no backward pass is running');
  running[running.length - 1].push(fn);
}

/**
 * Backpropagates grads (one per root; ones for scalar roots when omitted) into every leaf that
 * requires grad. The grads passed in are not consumed.
 */
export function runBackward(roots: readonly Tensor[], grads: readonly (Tensor | undefined)[], opts: BackwardOptions = {}): void {
  const callbacks: (() => void)[] = [];
  running.push(callbacks);
  try {
    walk(roots, grads, opts);
  } finally {
    running.pop();
  }
  // a callback may queue no more (the pass is over): each one runs once, in the order queued
  runEach(callbacks.map((fn) => () => noGrad(fn)));
}

/** Runs every fn, one that throws not keeping the others from running; the first error is rethrown after them. */
function runEach(fns: readonly (() => void)[], beforeRethrow?: () => void): void {
  let failure: { error: unknown } | null = null;
  for (const fn of fns) {
    try {
      fn();
    } catch (error) {
      failure ??= { error };
    }
  }
  if (!failure) return;
  beforeRethrow?.();
  throw failure.error;
}

function walk(roots: readonly Tensor[], grads: readonly (Tensor | undefined)[], opts: BackwardOptions): void {
  noGrad(() => {
    const pending = new Map<GradFn, Tensor>();
    const leafGrads = new Map<Tensor, Tensor>();
    const rootFns: GradFn[] = [];
    const { nodes, leaves, opaque } = dependencies(roots.flatMap((r) => (r.gradFn ? [r.gradFn] : [])));
    roots.forEach((root, i) => {
      root.assertLive('backward');
      if (!root.requiresGrad) throw new Error(`backward: tensor of shape ${shapeStr(root.shape)} does not require grad (nothing to differentiate)`);
      let g = grads[i];
      if (!g && root.numel !== 1)
        throw new Error(`backward: a gradient is needed for a non-scalar output of shape ${shapeStr(root.shape)} (call backward(grad))`);
      if (g && !sameShape(g.shape, root.shape))
        throw new Error(`backward: gradient ${shapeStr(g.shape)} does not match output ${shapeStr(root.shape)}`);
      g = g ? g.alias({ untracked: true }) : keep(ones(root.shape, { dtype: root.dtype, backend: root.backendName }));
      if (root.gradFn) {
        if (root.gradFn.released && !pending.has(root.gradFn))
          throw new Error(`backward: the graph of this ${shapeStr(root.shape)} tensor was already freed by an earlier backward() (pass { retainGraph: true } to call it twice)`);
        pending.set(root.gradFn, sumGrads(pending.get(root.gradFn), g));
        if (!rootFns.includes(root.gradFn)) rootFns.push(root.gradFn);
      } else {
        leaves.set(root, (leaves.get(root) ?? 0) + 1);
        leafGrads.set(root, g);
      }
    });
    // one of the leaf's uses has delivered its gradient (into leafGrads); after the last, .grad gets the sum
    const leafUsed = (leaf: Tensor): void => {
      const left = leaves.get(leaf)! - 1;
      leaves.set(leaf, left);
      if (left === 0) {
        accumulateLeaf(leaf, leafGrads.get(leaf)!);
        leafGrads.delete(leaf);
      }
    };
    const sendToLeaf = (leaf: Tensor, g: Tensor): void => {
      leafGrads.set(leaf, sumGrads(leafGrads.get(leaf), g));
      leafUsed(leaf);
    };
    if (running.length === 1 && nextBackward.length) {
      const listeners = nextBackward;
      nextBackward = [];
      const reached = opaque ? null : new Set(leaves.keys()); // the roots that are leaves included
      // before any gradient exists: an error leaves only the roots' own gradients to free
      runEach(listeners.map((fn) => () => fn(reached)), () => leafGrads.forEach((g) => g.dispose()));
    }
    for (const [leaf, g] of [...leafGrads]) {
      leafGrads.delete(leaf);
      sendToLeaf(leaf, g);
    }
    const ready = new ReadyQueue();
    for (const fn of rootFns) if (!nodes.has(fn)) ready.push(fn);
    for (let fn = ready.pop(); fn; fn = ready.pop()) {
      const g = pending.get(fn)!;
      pending.delete(fn);
      const into = addIntoTarget(fn, leafGrads);
      // the node adds its input's gradient into the leaf's sum so far, in place (GradFn.addInto)
      if (into && tidy(() => fn.addInto!(into.grad, g))) {
        if (!opts.retainGraph) fn.release();
        g.dispose();
        leafUsed(into.leaf);
        continue;
      }
      const outs = tidy(() => fn.backward(g));
      if (!opts.retainGraph) fn.release();
      const sends = fn.next.map((edge, i) => {
        const gi = outs[i];
        if (!edge || !gi) {
          if (gi && gi !== g) gi.dispose();
          return null;
        }
        return keep(gi === g ? g.alias({ untracked: true }) : gi);
      });
      // g's own handle goes before the gradients are sent: a gradient passed through (or written
      // in place into g's buffer) is then solely owned by its one receiver and can become a leaf's
      // .grad without a copy
      g.dispose();
      fn.next.forEach((edge, i) => {
        const gi = sends[i];
        if (!edge || !gi) return;
        if (edge.kind === 'leaf') return sendToLeaf(edge.leaf, gi);
        pending.set(edge.fn, sumGrads(pending.get(edge.fn), gi));
        const left = nodes.get(edge.fn)! - 1;
        nodes.set(edge.fn, left);
        if (left === 0) ready.push(edge.fn);
      });
    }
    for (const g of pending.values()) g.dispose();
  });
}
