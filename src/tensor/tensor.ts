// The Tensor handle: a layout over a reference-counted storage, plus autograd state. It holds
// no op code (ops attach the user-facing methods in src/ops/methods.ts), so no import cycle forms.
import type { DType } from './dtype.js';
import { Layout, type Shape, sameShape, shapeStr } from './layout.js';
import { track, type Disposable } from './scope.js';
import type { Storage } from './storage.js';

/** One recorded op on the tape: how to turn d(out) into d(inputs). */
export interface GradFn {
  readonly name: string;
  /** creation order; backward runs later nodes first */
  readonly seq: number;
  /** where each input's gradient goes: another node, a leaf's .grad, or nowhere */
  readonly next: readonly (Edge | null)[];
  /** d(out) -> d(input) for each input (null where none is needed) */
  backward(gradOut: Tensor): (Tensor | null)[];
  /**
   * optional, for a node with one input: adds d(input) into `dst` (that input's gradient summed so
   * far, solely owned, its shape and dtype) in place, instead of backward's fresh tensor. An embedding
   * adds its rows into the tied head's [V, D] gradient without a [V, D] of zeros beside it. Returns
   * false (having written nothing) where it cannot; backward then runs as usual.
   */
  addInto?(dst: Tensor, gradOut: Tensor): boolean;
  /** its backward runs a backward pass of its own (a checkpointed region's recomputation), reaching leaves that `next` does not list */
  readonly opaque?: boolean;
  /** frees the tensors saved for backward (idempotent) */
  release(): void;
  readonly released: boolean;
  /** reference counting by tensors and downstream nodes: the last unref releases the subgraph */
  retain(): void;
  unref(): void;
}

export type Edge = { readonly kind: 'fn'; readonly fn: GradFn } | { readonly kind: 'leaf'; readonly leaf: Tensor };

export type GradHook = (grad: Tensor) => void;

let nextId = 1;

export class Tensor implements Disposable {
  readonly id = nextId++;
  private storageNow: Storage;
  private layoutNow: Layout;
  /** for leaves: whether backward() fills .grad */
  requiresGrad = false;
  grad: Tensor | null = null;
  gradFn: GradFn | null = null;
  /** called once per backward() with the final accumulated gradient of this leaf */
  readonly hooks: GradHook[] = [];
  /** an optional name used in error messages and state dicts */
  name = '';
  private disposed = false;

  /** Takes over one reference to storage. `untracked` skips the enclosing tidy() scope. */
  constructor(storage: Storage, layout: Layout, opts: { untracked?: boolean } = {}) {
    if (layout.extent() > storage.numel)
      throw new Error(`Tensor: layout [${layout.shape.join(', ')}] reaches element ${layout.extent()} of a ${storage.numel}-element storage`);
    this.storageNow = storage;
    this.layoutNow = layout;
    if (!opts.untracked) track(this);
  }

  /** The storage this handle views (changed only by setData). */
  get storage(): Storage {
    return this.storageNow;
  }
  /** Where in the storage the elements lie (changed only by setData). */
  get layout(): Layout {
    return this.layoutNow;
  }

  get shape(): Shape {
    return this.layout.shape;
  }
  get dtype(): DType {
    return this.storage.dtype;
  }
  get ndim(): number {
    return this.layout.shape.length;
  }
  get numel(): number {
    return this.layout.numel;
  }
  get strides(): readonly number[] {
    return this.layout.strides;
  }
  get backendName(): string {
    return this.storage.backendName;
  }
  get isLeaf(): boolean {
    return this.gradFn === null;
  }
  get isDisposed(): boolean {
    return this.disposed;
  }

  size(dim?: number): number {
    if (dim === undefined) return this.numel;
    const d = dim < 0 ? dim + this.ndim : dim;
    if (d < 0 || d >= this.ndim) throw new Error(`size: dim ${dim} out of range for shape [${this.shape.join(', ')}]`);
    return this.shape[d];
  }

  isContiguous(): boolean {
    return this.layout.isContiguous();
  }

  /** Throws if this tensor was disposed; every op calls it on its inputs. */
  assertLive(op: string): this {
    if (this.disposed || this.storage.released)
      throw new Error(`${op}: tensor${this.name ? ` '${this.name}'` : ''} of shape [${this.shape.join(', ')}] was disposed`);
    if (this.storage.evicted)
      throw new Error(`${op}: tensor${this.name ? ` '${this.name}'` : ''} of shape [${this.shape.join(', ')}] has no bytes now: its storage was evicted (a ZeRO-3 parameter between its forward and its backward); restore() it first`);
    // a lazily built parameter (tensor/meta.ts) has a shape and a dtype but no values yet
    if (this.storage.device === 'meta')
      throw new Error(`${op}: ${this.name ? `parameter '${this.name}'` : 'a tensor'} [${this.shape.join(', ')}] ${this.dtype} is a meta tensor (built lazily with backend 'meta', never loaded): it has no values; load the checkpoint into the model (loadPretrained) before using it`);
    return this;
  }

  /** A second handle to the same elements (shares storage; no copy, no autograd link). */
  alias(opts: { untracked?: boolean } = {}): Tensor {
    this.assertLive('alias');
    return new Tensor(this.storage.retain(), this.layout, opts);
  }

  /**
   * Makes this tensor view src's elements (PyTorch's `p.data = src`, which FSDP uses to point each
   * parameter into its flat buffer): same shape, dtype and backend; identity, name, hooks and
   * autograd state stay. The old storage loses this handle's reference.
   * @example p.setData(reshape(narrow(flat, 0, at, p.numel), p.shape)) // p now lives inside flat
   */
  setData(src: Tensor): void {
    this.assertLive('setData');
    src.assertLive('setData');
    if (src.dtype !== this.dtype || src.backendName !== this.backendName || !sameShape(src.shape, this.shape))
      throw new Error(`setData: ${src.dtype} ${shapeStr(src.shape)} on '${src.backendName}' cannot replace${this.name ? ` '${this.name}'` : ''} ${this.dtype} ${shapeStr(this.shape)} on '${this.backendName}'`);
    const old = this.storageNow;
    this.storageNow = src.storage.retain();
    this.layoutNow = src.layout;
    old.release();
  }

  /** Sets the node that produced this tensor (ops call it once, via record()). */
  setGradFn(fn: GradFn): void {
    fn.retain();
    this.gradFn?.unref();
    this.gradFn = fn;
    this.requiresGrad = true;
  }

  /** Marks this leaf as trainable; returns this. */
  requiresGrad_(on = true): this {
    if (this.gradFn) throw new Error('requiresGrad_: only leaf tensors can change requiresGrad (use detach())');
    this.requiresGrad = on;
    return this;
  }

  /** Registers a hook called with this leaf's gradient once backward() has finished accumulating it. */
  registerHook(hook: GradHook): () => void {
    this.hooks.push(hook);
    return () => {
      const i = this.hooks.indexOf(hook);
      if (i >= 0) this.hooks.splice(i, 1);
    };
  }

  /** Drops this handle's storage reference (and its .grad). Safe to call twice. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.storage.release();
    this.grad?.dispose();
    this.grad = null;
    this.gradFn?.unref();
    this.gradFn = null;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    return `Tensor(shape=[${this.shape.join(', ')}], dtype=${this.dtype}, backend=${this.backendName}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }
}
