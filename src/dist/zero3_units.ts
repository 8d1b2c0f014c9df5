// The units ZeRO stage 3 gathers (FSDP's "wrapping units"): every decoder layer (a module at
// `...layers.<i>`) is one unit, and so are a CausalLM's embeddings, final norm and head; each is
// gathered whole before it runs and released after; its parameters
// and its buffers tagged as parameter memory (QLoRA's 4-bit packed weights and scales) take part. A released
// parameter is a meta tensor of its shape (tensor/meta.ts) standing in the module's property, so
// a stray use is an error naming it; a gathered one is a view into the unit's gathered buffer put
// in the same property (a "parameter handle swap": modules read their properties, so no model
// code changes). The placeholder is the parameter's stable identity (names, checkpoints, the
// trainer's parameter list); the views are new tensors on every gather.
import { narrow, reshape } from '../ops/view.js';
import { Module, Parameter, isParameter } from '../nn/module.js';
import { noGrad } from '../tensor/grad_mode.js';
import { metaTensor } from '../tensor/meta.js';
import { keep, tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';

/** Where a module holds a parameter: module[key]. */
export interface Slot {
  module: Module;
  key: string;
}

/** A parameter (or quantized-weight buffer) of a unit: its dotted name, its stand-in while released, and where the module holds it. */
export interface UnitParam {
  name: string;
  placeholder: Tensor;
  slot: Slot;
  /** a buffer (QuantLinear's packed weight and scales): swapped in as a plain tensor, not a parameter */
  buffer: boolean;
}

/** What findUnits finds of a layer's tensors: name, tensor, where it is held, and whether it is a buffer. */
export type UnitTensor = [name: string, t: Tensor, slot: Slot, buffer: boolean];

/** A unit as findUnits finds it: a name, and its parameters (and parameter-memory buffers). */
export interface FoundUnit {
  path: string;
  params: UnitTensor[];
}

/** A place where a unit is used: ZeRO-3 gathers the unit around `owner[method](...)`. */
export interface UnitCall {
  /** index into the units */
  unit: number;
  owner: object;
  method: string;
}

/** The decoder pieces outside the layers, when the model is a CausalLM (HF names: model.embed_tokens, model.norm, lm_head). */
interface DecoderOuter {
  model: { embed_tokens: Module; norm: Module };
  lm_head?: Module;
  headForward: unknown;
}
const isDecoderLM = (m: object): m is DecoderOuter => {
  const inner = (m as { model?: unknown }).model;
  return typeof (m as { headForward?: unknown }).headForward === 'function' && inner instanceof Module
    && (inner as Partial<DecoderOuter['model']>).embed_tokens instanceof Module && (inner as Partial<DecoderOuter['model']>).norm instanceof Module;
};

/** A module's parameters (and its own parameter-memory buffers) of at least `persistAbove` elements, named under `path`. */
function tensorsOf(module: Module, path: string, persistAbove: number): UnitTensor[] {
  return module.namedModules().flatMap(([sub, m]) => {
    // a module's own buffers (no dot in the name) that count as parameter memory: a quantized base's packed weight and scales
    const buffers = new Set(m.namedBuffers().filter(([n, b]) => !n.includes('.') && b.storage.tag === 'param').map(([, b]) => b));
    return Object.entries(m)
      .filter((e): e is [string, Tensor] => (isParameter(e[1]) || buffers.has(e[1] as Tensor)) && (e[1] as Tensor).numel >= persistAbove)
      .map(([key, p]): UnitTensor => [`${path}.${sub ? `${sub}.` : ''}${key}`, p, { module: m, key }, !isParameter(p)]);
  });
}

/**
 * The units of a model and the calls that use them, in forward order. Every decoder layer (a
 * module at `...layers.<i>`) is a unit used by its forward. In a CausalLM the embeddings, the
 * final norm and the head are units too: model.embed_tokens (its forward), model.norm (its
 * forward) and lm_head (used by CausalLM.headForward, which reads its weight directly). A tied
 * head (no lm_head) is the embedding unit used a second time, by headForward: one unit, two calls.
 * Only parameters of at least `persistAbove` elements are partitioned (smaller ones stay whole on
 * every rank: DeepSpeed's stage3_param_persistence_threshold); a unit left with none is no unit.
 * A parameter shared between two units (or a unit and the rest) is an error.
 * @example findUnits(causalLM, 0).units.map((u) => u.path) // ['model.embed_tokens', 'model.layers.0', 'model.layers.1', 'model.norm', 'lm_head']
 */
export function findUnits(model: Module, persistAbove: number): { units: FoundUnit[]; calls: UnitCall[] } {
  const layers = model.namedModules().filter(([path]) => /(^|\.)layers\.\d+$/.test(path));
  const outer = isDecoderLM(model);
  const uses: { path: string; module: Module; owner: object; method: string }[] = [
    ...(outer ? [{ path: 'model.embed_tokens', module: model.model.embed_tokens, owner: model.model.embed_tokens, method: 'forward' }] : []),
    ...layers.map(([path, module]) => ({ path, module, owner: module, method: 'forward' })),
    ...(outer ? [{ path: 'model.norm', module: model.model.norm, owner: model.model.norm, method: 'forward' }] : []),
    ...(outer ? [model.lm_head
      ? { path: 'lm_head', module: model.lm_head, owner: model, method: 'headForward' }
      : { path: 'model.embed_tokens', module: model.model.embed_tokens, owner: model, method: 'headForward' }] : []),
  ];
  checkNotShared(model, [...new Set(uses.map((u) => u.path))]);
  const units: FoundUnit[] = [];
  const calls: UnitCall[] = [];
  for (const use of uses) {
    let unit = units.findIndex((u) => u.path === use.path);
    if (unit < 0) {
      const params = tensorsOf(use.module, use.path, persistAbove);
      if (!params.length) continue;
      unit = units.push({ path: use.path, params }) - 1;
    }
    calls.push({ unit, owner: use.owner, method: use.method });
  }
  return { units, calls };
}

/** A parameter held by two units (or by a unit and a module outside every unit) cannot be partitioned with one of them. */
function checkNotShared(model: Module, unitPaths: string[]): void {
  const owner = new Map<Tensor, string>();
  for (const [path, m] of model.namedModules())
    for (const [key, v] of Object.entries(m))
      if (isParameter(v)) {
        const unit = unitPaths.find((u) => path === u || path.startsWith(`${u}.`)) ?? '(outside the units)';
        const seen = owner.get(v);
        if (seen !== undefined && seen !== unit) throw new Error(`ZeRO stage 3: parameter '${path ? `${path}.` : ''}${key}' is shared by ${seen} and ${unit}; a parameter may belong to one unit only`);
        owner.set(v, unit);
      }
}

/** The stand-in of a released parameter: its shape and dtype, no bytes, still a parameter (requiresGrad kept); a buffer's is a plain meta tensor. */
export function placeholderOf(p: Tensor, name: string, buffer: boolean): Tensor {
  const meta = buffer ? keep(metaTensor(p.shape, p.dtype)) : Parameter(metaTensor(p.shape, p.dtype), p.requiresGrad);
  meta.name = name;
  return meta;
}

/**
 * Puts views of `full` (the parameters laid end to end from `offsets`) into the modules, as
 * parameters with the placeholders' requiresGrad; returns the views (dispose them to release).
 */
export function swapIn(params: readonly UnitParam[], offsets: readonly number[], full: Tensor): Tensor[] {
  return params.map((p, i) => {
    const view = keep(noGrad(() => tidy(() => reshape(narrow(full, 0, offsets[i], p.placeholder.numel), p.placeholder.shape))));
    if (!p.buffer) Parameter(view, p.placeholder.requiresGrad);
    view.name = p.name;
    Reflect.set(p.slot.module, p.slot.key, view);
    return view;
  });
}

/** Puts views that swapIn made earlier back into the modules (a backward's recomputation reads them there). */
export function swapBack(params: readonly UnitParam[], views: readonly Tensor[]): void {
  params.forEach((p, i) => Reflect.set(p.slot.module, p.slot.key, views[i]));
}

/** Puts the placeholders back (the views stay valid for whoever still holds them until disposed). */
export function swapOut(params: readonly UnitParam[]): void {
  for (const p of params) Reflect.set(p.slot.module, p.slot.key, p.placeholder);
}
