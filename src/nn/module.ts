// Module: a tree of parameters, buffers and child modules found from its own properties, so a
// model's property names are its state-dict keys (HF names: `self_attn.q_proj.weight`).
import { backendOf } from '../backend/index.js';
import { clone } from '../ops/view.js';
import { to as cast } from '../ops/elementwise.js';
import { toBackend } from '../ops/transfer.js';
import { type BackendName, isBackendName } from '../backend/kernels.js';
import { type DType, isFloat } from '../tensor/dtype.js';
import { shapeStr } from '../tensor/layout.js';
import { keep } from '../tensor/scope.js';
import { noGrad } from '../tensor/grad_mode.js';
import { Tensor } from '../tensor/tensor.js';
import { isMeta, metaTensor } from '../tensor/meta.js';

const parameters = new WeakSet<Tensor>();

/** Marks t as a trainable parameter: requiresGrad, counted under the 'param' memory tag. */
export function Parameter(t: Tensor, requiresGrad = true): Tensor {
  parameters.add(t);
  t.storage.tag = 'param';
  t.requiresGrad = requiresGrad;
  keep(t);
  return t;
}

export const isParameter = (t: unknown): t is Tensor => t instanceof Tensor && parameters.has(t);

/** Copies src's values into dst in place (same shape; dtype cast and backend move as needed). */
export function assignValues(dst: Tensor, src: Tensor): void {
  dst.assertLive('assignValues');
  const moved = src.backendName === dst.backendName ? src : toBackend(src, dst.backendName as BackendName);
  backendOf(dst).kernels.copy(moved, dst);
  if (moved !== src) moved.dispose();
}

export interface LoadResult {
  missing: string[];
  unexpected: string[];
}

export class Module {
  training = true;
  /** state kept with the module between calls (a generation's decode cache), by key: see attach */
  private readonly attachments = new Map<string, { dispose(): void }>();
  private readonly bufferNames = new Map<string, boolean>(); // name -> persistent
  /** buffers whose dtype is part of a storage format (quantization statistics): to(dtype) leaves them */
  private readonly formatBuffers = new Set<string>();

  /**
   * Registers a non-trainable tensor (e.g. rotary frequencies); persistent ones are in the state
   * dict. A `format` buffer keeps its dtype when the model is cast (it still moves backends).
   */
  registerBuffer(name: string, t: Tensor, persistent = true, opts: { format?: boolean } = {}): Tensor {
    this.bufferNames.set(name, persistent);
    if (opts.format) this.formatBuffers.add(name);
    keep(t);
    Reflect.set(this, name, t);
    return t;
  }

  /** Direct children by property name (arrays of modules count as name.0, name.1, ...). */
  namedChildren(): [string, Module][] {
    const out: [string, Module][] = [];
    for (const [key, v] of Object.entries(this)) {
      if (v instanceof Module) out.push([key, v]);
      else if (Array.isArray(v)) v.forEach((m, i) => m instanceof Module && out.push([`${key}.${i}`, m]));
    }
    return out;
  }

  namedModules(prefix = ''): [string, Module][] {
    return [[prefix, this], ...this.namedChildren().flatMap(([n, m]) => m.namedModules(prefix ? `${prefix}.${n}` : n))];
  }

  /** Every parameter with its dotted path; a parameter shared by two modules is listed once. */
  namedParameters(): [string, Tensor][] {
    const seen = new Set<Tensor>();
    const out: [string, Tensor][] = [];
    for (const [path, m] of this.namedModules())
      for (const [key, v] of Object.entries(m))
        if (isParameter(v) && !seen.has(v)) {
          seen.add(v);
          out.push([path ? `${path}.${key}` : key, v]);
        }
    return out;
  }

  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }

  namedBuffers(persistentOnly = false): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [path, m] of this.namedModules())
      for (const [name, persistent] of m.bufferNames) {
        const t: unknown = Reflect.get(m, name);
        if (t instanceof Tensor && (persistent || !persistentOnly)) out.push([path ? `${path}.${name}` : name, t]);
      }
    return out;
  }

  /** Parameters and persistent buffers by name (the tensors themselves, not copies). */
  stateDict(): Record<string, Tensor> {
    return Object.fromEntries([...this.namedParameters(), ...this.namedBuffers(true)]);
  }

  /**
   * Copies values into this module's tensors (casting dtype, moving backend). Strict by default:
   * missing or unexpected keys and shape mismatches throw, naming them.
   */
  loadStateDict(sd: Record<string, Tensor>, opts: { strict?: boolean } = {}): LoadResult {
    const own = this.stateDict();
    // own keys only: a key named __proto__ or constructor must not pass as present
    const missing = Object.keys(own).filter((k) => !Object.hasOwn(sd, k));
    const unexpected = Object.keys(sd).filter((k) => !Object.hasOwn(own, k));
    if ((opts.strict ?? true) && (missing.length || unexpected.length))
      throw new Error(`loadStateDict: missing keys [${missing.join(', ')}], unexpected keys [${unexpected.join(', ')}]`);
    for (const [name, dst] of Object.entries(own)) {
      const src = sd[name];
      if (!src) continue;
      if (src.shape.length !== dst.shape.length || src.shape.some((s, i) => s !== dst.shape[i]))
        throw new Error(`loadStateDict: '${name}' has shape ${shapeStr(src.shape)} in the state dict but ${shapeStr(dst.shape)} in the model`);
      assignValues(dst, src);
    }
    return { missing, unexpected };
  }

  train(on = true): this {
    for (const [, m] of this.namedModules()) m.training = on;
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /** Freezes (false) or unfreezes (true) every parameter. */
  requiresGrad_(on = true): this {
    for (const p of this.parameters()) p.requiresGrad = on;
    return this;
  }

  zeroGrad(): void {
    for (const p of this.parameters()) p.zeroGrad();
  }

  /**
   * Converts floating-point parameters and buffers to dtype, or moves everything to a backend. Meta
   * (lazily built) tensors change dtype and stay meta: there is nothing to move.
   */
  to(target: DType | BackendName): this {
    const move = isBackendName(target);
    const convert = (t: Tensor): Tensor => {
      if (isMeta(t)) return move || !isFloat(t.dtype) ? t : metaTensor(t.shape, target);
      return isBackendName(target) ? toBackend(t, target) : isFloat(t.dtype) ? cast(t, target) : clone(t);
    };
    return this.mapTensors((t, at) => (at.format && !move ? t : convert(t)));
  }

  /**
   * Replaces every parameter and buffer t by fn(t), once per tensor (tied weights stay tied): a new
   * parameter keeps requiresGrad, and t is disposed as soon as it is replaced, so a conversion holds
   * one tensor twice at most. `at.name` is t's dotted path (the first one, when shared); `at.format`
   * marks the buffers whose dtype is a storage format (quantization statistics).
   * @example model.mapTensors((t) => (isMeta(t) ? zeros(t.shape) : t)) // materialise with zeros
   */
  mapTensors(fn: (t: Tensor, at: { name: string; format: boolean }) => Tensor): this {
    const done = new Map<Tensor, Tensor>();
    for (const [path, m] of this.namedModules()) {
      for (const [key, v] of Object.entries(m)) {
        if (!(v instanceof Tensor) || !(isParameter(v) || m.bufferNames.has(key))) continue;
        let next = done.get(v);
        if (!next) {
          next = keep(noGrad(() => fn(v, { name: path ? `${path}.${key}` : key, format: m.formatBuffers.has(key) })));
          if (next !== v) {
            if (isParameter(v)) Parameter(next, v.requiresGrad);
            next.name ||= v.name;
            v.dispose();
          }
          done.set(v, next);
        }
        Reflect.set(m, key, next);
      }
    }
    return this;
  }

  /**
   * Keeps `value` with this module under `key` until it is replaced, detached or the module disposed
   * (then it is disposed): state a later call reuses that is neither a parameter nor a buffer, such as
   * the KV cache and recorded graph of the last generation (src/infer/cpu_graph_decode.ts).
   */
  attach(key: string, value: { dispose(): void } | null): void {
    const old = this.attachments.get(key);
    if (old === value) return;
    old?.dispose();
    if (value) this.attachments.set(key, value);
    else this.attachments.delete(key);
  }

  /** What attach kept under `key`, if anything. */
  attached<T extends { dispose(): void }>(key: string): T | undefined {
    return this.attachments.get(key) as T | undefined;
  }

  /** Disposes everything attach kept (the memory a later call would have reused). */
  detachAll(): void {
    for (const key of [...this.attachments.keys()]) this.attach(key, null);
  }

  /** Frees every parameter and buffer, and what attach kept. */
  dispose(): void {
    this.detachAll();
    for (const t of [...this.parameters(), ...this.namedBuffers().map(([, b]) => b)]) t.dispose();
  }
}
