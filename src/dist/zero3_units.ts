// The units ZeRO stage 3 gathers (FSDP's "wrapping units"): every decoder layer (a module at
// `...layers.<i>`) is one unit, gathered whole before it runs and released after; its parameters
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

/** A decoder layer as ZeRO-3 sees it: the module whose forward is gathered around, and its partitioned parameters. */
export interface UnitModule {
  path: string;
  module: Module;
  params: UnitParam[];
}

/**
 * The decoder layers of a model (modules at paths ending in `layers.<i>`), each with its parameters
 * of at least `persistAbove` elements (smaller ones stay whole on every rank: DeepSpeed's
 * stage3_param_persistence_threshold). A parameter shared with anything outside its layer is an error.
 * @example findUnits(causalLM, 0).map((u) => u.path) // ['model.layers.0', 'model.layers.1']
 */
export function findUnits(model: Module, persistAbove: number): { module: Module; path: string; params: UnitTensor[] }[] {
  const units = model.namedModules().filter(([path]) => /(^|\.)layers\.\d+$/.test(path));
  const owner = new Map<Tensor, string>();
  for (const [path, m] of model.namedModules())
    for (const [key, v] of Object.entries(m))
      if (isParameter(v)) {
        const unit = units.find(([u]) => path === u || path.startsWith(`${u}.`))?.[0] ?? '(outside the layers)';
        const seen = owner.get(v);
        if (seen !== undefined && seen !== unit) throw new Error(`ZeRO stage 3: parameter '${path ? `${path}.` : ''}${key}' is shared by ${seen} and ${unit}; a parameter may belong to one layer only`);
        owner.set(v, unit);
      }
  return units.map(([path, module]) => ({
    module, path,
    params: module.namedModules().flatMap(([sub, m]) => {
      // a module's own buffers (no dot in the name) that count as parameter memory: a quantized base's packed weight and scales
      const buffers = new Set(m.namedBuffers().filter(([n, b]) => !n.includes('.') && b.storage.tag === 'param').map(([, b]) => b));
      return Object.entries(m)
        .filter((e): e is [string, Tensor] => (isParameter(e[1]) || buffers.has(e[1] as Tensor)) && (e[1] as Tensor).numel >= persistAbove)
        .map(([key, p]): UnitTensor => [`${path}.${sub ? `${sub}.` : ''}${key}`, p, { module: m, key }, !isParameter(p)]);
    }),
  }));
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

/** Puts the placeholders back (the views stay valid for whoever still holds them until disposed). */
export function swapOut(params: readonly UnitParam[]): void {
  for (const p of params) Reflect.set(p.slot.module, p.slot.key, p.placeholder);
}
