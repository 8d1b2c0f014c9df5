// Injecting LoRA into a model by module name, named adapters, and PEFT's adapter format:
// adapter_config.json plus adapter_model.safetensors. In memory the keys carry the adapter name
// (`...q_proj.lora_A.default.weight`, `...lm_head.modules_to_save.default.weight`); the file strips
// it, as peft's get_peft_model_state_dict does (`base_model.model....q_proj.lora_A.weight`,
// `base_model.model.lm_head.weight`). Merging folds the active adapter into its base layers.
import { existsSync, mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { readJson, writeJsonAtomic } from '../io/hf_folder.js';
import { SafetensorsFile, saveSafetensors } from '../io/safetensors.js';
import { shapeStr } from '../tensor/layout.js';
import type { Tensor } from '../tensor/tensor.js';
import { Embedding, Linear } from '../nn/layers.js';
import { Module, assignValues } from '../nn/module.js';
import { type LoraBase, LoraLinear, type LoraOptions } from './lora_linear.js';
import { ModulesToSaveWrapper } from './modules_to_save.js';

export interface LoraConfig extends LoraOptions {
  /** module names (q_proj, v_proj, ...) or 'all-linear' (every Linear but the LM head) */
  targetModules: string[] | 'all-linear';
  /** modules trained in full and saved with the adapter (PEFT's modules_to_save: embed_tokens, lm_head) */
  modulesToSave?: string[];
  /** the base model the adapter was trained on (adapter_config.json's base_model_name_or_path) */
  baseModelNameOrPath?: string;
}

const PREFIX = 'base_model.model.';

type Wrapper = LoraLinear | ModulesToSaveWrapper;

interface Site<T> {
  parent: Module;
  key: string;
  path: string;
  layer: T;
}

/** A frozen Linear-shaped layer LoRA can wrap (Linear, or anything with the FrozenLinear products). */
const isLoraBase = (v: unknown): v is LoraBase =>
  v instanceof Module && !(v instanceof LoraLinear) && typeof Reflect.get(v, 'applyWeight') === 'function' &&
  typeof Reflect.get(v, 'applyWeightTransposed') === 'function' && typeof Reflect.get(v, 'forward') === 'function';

/** Every (parent, key, child) of the model outside LoRA wrappers whose child passes `keep`. */
function sites<T>(model: Module, keep: (v: unknown) => v is T): Site<T>[] {
  const inside = new Set<Module>();
  const out: Site<T>[] = [];
  for (const [path, m] of model.namedModules()) {
    if (inside.has(m)) continue;
    if (m instanceof LoraLinear || m instanceof ModulesToSaveWrapper) for (const [, c] of m.namedModules()) if (c !== m) inside.add(c);
    for (const [key, v] of Object.entries(m)) if (keep(v)) out.push({ parent: m, key, path: path ? `${path}.${key}` : key, layer: v });
  }
  return out;
}

const isWrapper = (v: unknown): v is Wrapper => v instanceof LoraLinear || v instanceof ModulesToSaveWrapper;

/** PEFT's module-name match: the whole path or its last components. */
const matches = (path: string, name: string): boolean => path === name || path.endsWith(`.${name}`);

function tiedEmbeddings(model: Module): boolean {
  const c: unknown = Reflect.get(model, 'config');
  return typeof c === 'object' && c !== null && Reflect.get(c, 'tieWordEmbeddings') === true;
}

/**
 * Wraps the matching layers in LoraLinear (or adds adapter `name` to existing ones), wraps
 * modules_to_save, and leaves only adapter `name` trainable; returns the LoRA layers' paths.
 * @example injectLora(model, { r: 16, alpha: 16, targetModules: 'all-linear' })
 */
export function injectLora(model: Module, config: LoraConfig, name = 'default'): string[] {
  if (adapterNames(model).includes(name)) throw new Error(`injectLora: the model already has an adapter named '${name}'`);
  const wanted = config.targetModules;
  const targets = [...sites(model, isLoraBase), ...sites(model, (v): v is LoraLinear => v instanceof LoraLinear)].filter(({ key, path }) =>
    // all-linear: every Linear but the output head (lm_head) and what is trained in full (a reward model's score)
    wanted === 'all-linear' ? key !== 'lm_head' && !(config.modulesToSave ?? []).some((t) => matches(path, t)) : wanted.some((t) => matches(path, t)));
  if (!targets.length) throw new Error(`injectLora: target modules [${wanted}] matched no Linear layer of the model`);
  const saved = (config.modulesToSave ?? []).map((t) => {
    const hits = sites(model, (v): v is Linear | Embedding | ModulesToSaveWrapper => v instanceof Linear || v instanceof Embedding || v instanceof ModulesToSaveWrapper)
      .filter(({ path }) => matches(path, t));
    if (!hits.length) throw new Error(`injectLora: modules_to_save '${t}' matched no Linear or Embedding of the model`);
    return hits;
  }).flat();
  for (const { path, layer } of targets)
    if (!Number.isInteger(config.r) || config.r <= 0 || config.r > Math.min(layer.inFeatures, layer.outFeatures))
      throw new Error(`injectLora: rank ${config.r} must be a positive integer no larger than the layer ${path} (${layer.outFeatures} x ${layer.inFeatures})`);
  const before = activeAdapter(model);
  model.requiresGrad_(false);
  for (const { parent, key, layer } of targets) {
    if (layer instanceof LoraLinear) layer.addAdapter(name, config);
    else Reflect.set(parent, key, new LoraLinear(layer, config, name));
  }
  for (const { parent, key, path, layer } of saved) {
    const w = layer instanceof ModulesToSaveWrapper ? layer : new ModulesToSaveWrapper(layer);
    if (w !== layer) Reflect.set(parent, key, w);
    w.addAdapter(name);
    if (w.original_module instanceof Embedding && tiedEmbeddings(model))
      process.emitWarning(`modules_to_save '${path}' is tied to the LM head: as in peft, the head keeps the frozen original weight and only the input embedding trains`, 'KestrelWarning');
  }
  for (const t of adapterTensors(model, name).values()) t.requiresGrad = true;
  added.set(model, [...(added.get(model) ?? []), name]);
  // one model-wide active adapter, as in peft: adding one does not switch to it
  setAdapter(model, before === undefined ? name : before);
  return targets.map((t) => t.path);
}

/** The adapter the model runs (null: adapters disabled; undefined: the model has none). */
export function activeAdapter(model: Module): string | null | undefined {
  const layers = sites(model, isWrapper).map((s) => s.layer);
  if (!layers.length) return undefined;
  return layers.find((l) => l.active !== null)?.active ?? null;
}

/** The model's LoRA layers by path. */
export function loraLayers(model: Module): Map<string, LoraLinear> {
  return new Map(sites(model, (v): v is LoraLinear => v instanceof LoraLinear).map(({ path, layer }) => [path, layer]));
}

/** Adapter names per model in the order injectLora added them (peft's peft_config order). */
const added = new WeakMap<Module, string[]>();

/** Every adapter name the model holds (LoRA layers and modules_to_save), in the order added. */
export function adapterNames(model: Module): string[] {
  const present = new Set(sites(model, isWrapper).flatMap(({ layer }) => layer.adapters));
  const order = (added.get(model) ?? []).filter((n) => present.has(n));
  return [...new Set([...order, ...present])];
}

/** The tensors of adapter `name` under their adapter-file keys (peft's names without the adapter name). */
export function adapterTensors(model: Module, name = 'default'): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const { path, layer } of sites(model, isWrapper)) {
    if (!layer.adapters.includes(name)) continue;
    if (layer instanceof LoraLinear) {
      out.set(`${PREFIX}${path}.lora_A.weight`, layer.lora_A.get(name).weight);
      out.set(`${PREFIX}${path}.lora_B.weight`, layer.lora_B.get(name).weight);
    } else {
      const copy = layer.modules_to_save.get(name);
      out.set(`${PREFIX}${path}.weight`, copy.weight);
      if (copy instanceof Linear && copy.bias) out.set(`${PREFIX}${path}.bias`, copy.bias);
    }
  }
  return out;
}

/**
 * Makes adapter `name` the one every layer runs (layers without it run their base only), or
 * disables all adapters with null (the base model's exact output).
 * @example setAdapter(model, 'french'); setAdapter(model, null)
 */
export function setAdapter(model: Module, name: string | null): void {
  const names = adapterNames(model);
  if (name !== null && !names.includes(name)) throw new Error(`setAdapter: no adapter named '${name}' (the model has ${names.map((n) => `'${n}'`).join(', ') || 'none'})`);
  for (const { layer } of sites(model, isWrapper)) layer.active = name !== null && layer.adapters.includes(name) ? name : null;
}

/**
 * Runs fn on the base model (every adapter disabled), then restores the active adapter even when
 * fn throws: the frozen reference of DPO, GRPO and PPO under LoRA.
 * @example const refLogps = withAdaptersDisabled(model, () => noGrad(() => logpsOf(model)))
 */
export function withAdaptersDisabled<T>(model: Module, fn: () => T): T {
  const before = activeAdapter(model);
  if (before) setAdapter(model, null);
  try {
    return fn();
  } finally {
    if (before) setAdapter(model, before);
  }
}

/** Removes adapter `name` from every layer; a layer left without adapters becomes its base again. */
export function deleteAdapter(model: Module, name: string): void {
  const names = adapterNames(model);
  if (!names.includes(name)) throw new Error(`deleteAdapter: no adapter named '${name}' (the model has ${names.map((n) => `'${n}'`).join(', ') || 'none'})`);
  const before = activeAdapter(model);
  for (const { parent, key, layer } of sites(model, isWrapper)) {
    if (!layer.adapters.includes(name)) continue;
    layer.deleteAdapter(name);
    if (layer.adapters.length) continue;
    Reflect.set(parent, key, layer instanceof LoraLinear ? layer.base_layer : layer.original_module);
  }
  const left = adapterNames(model);
  if (left.length) setAdapter(model, before === name ? left[0] : (before ?? null));
}

/** Reads adapter_config.json (PEFT) into a LoraConfig; unsupported features are errors. */
export function readAdapterConfig(dir: string): LoraConfig {
  const file = join(dir, 'adapter_config.json');
  const c = readJson(file);
  if (c.peft_type !== 'LORA') throw new Error(`${file}: peft_type ${JSON.stringify(c.peft_type)} is not supported (LORA)`);
  const r = c.r;
  const alpha = c.lora_alpha ?? r;
  if (!Number.isInteger(r) || (r as number) <= 0) throw new Error(`${file}: 'r' must be a positive integer, got ${JSON.stringify(r)}`);
  if (typeof alpha !== 'number') throw new Error(`${file}: 'lora_alpha' must be a number`);
  const t = c.target_modules;
  const targets = t === 'all-linear' ? 'all-linear' : Array.isArray(t) && t.every((x) => typeof x === 'string') ? (t as string[]) : null;
  if (!targets) throw new Error(`${file}: 'target_modules' must be a list of module names or "all-linear"`);
  for (const f of ['use_dora', 'fan_in_fan_out'] as const) if (c[f] === true) throw new Error(`${file}: '${f}' is not supported`);
  const m = c.modules_to_save ?? null;
  if (m !== null && !(Array.isArray(m) && m.every((x) => typeof x === 'string'))) throw new Error(`${file}: 'modules_to_save' must be null or a list of module names`);
  const base = c.base_model_name_or_path;
  return {
    r: r as number, alpha, targetModules: targets, dropout: typeof c.lora_dropout === 'number' ? c.lora_dropout : 0, useRslora: c.use_rslora === true,
    ...(m && m.length ? { modulesToSave: m as string[] } : {}),
    ...(typeof base === 'string' && base ? { baseModelNameOrPath: base } : {}),
  };
}

export interface LoadAdapterOptions {
  /** the adapter's name in the model (default 'default') */
  name?: string;
  /** the model's folder or hub name; an adapter made for a clearly different base is warned about */
  baseModel?: string;
}

/**
 * Adapters made for another base usually fail the strict shape check; one that fits but names a
 * different base (last path component, e.g. 'SmolLM2-135M' vs 'Qwen2-0.5B') gets a warning, not an
 * error, because local copies of a model are often renamed.
 */
function checkBase(file: string, adapterBase: string | undefined, modelBase: string | undefined): void {
  if (!adapterBase || !modelBase) return;
  const last = (p: string): string => basename(p.replace(/[\\/]+$/, '')).toLowerCase();
  if (last(adapterBase) !== last(modelBase))
    process.emitWarning(`${file}: the adapter was trained on '${adapterBase}' but is being loaded into '${modelBase}'`, 'KestrelWarning');
}

/**
 * Injects the adapter in dir into model as `name` and loads its weights (strict: every key, every
 * shape); a failed load leaves the model as it was.
 * @example loadAdapter(model, './my-adapter', { name: 'french' }); setAdapter(model, 'french')
 */
export function loadAdapter(model: Module, dir: string, opts: LoadAdapterOptions = {}): LoraConfig {
  const name = opts.name ?? 'default';
  const config = readAdapterConfig(dir);
  const path = join(dir, 'adapter_model.safetensors');
  if (!existsSync(path)) throw new Error(`${dir}: no adapter_model.safetensors`);
  checkBase(join(dir, 'adapter_config.json'), config.baseModelNameOrPath, opts.baseModel);
  using f = new SafetensorsFile(path);
  injectLora(model, config, name);
  try {
    const own = adapterTensors(model, name);
    const missing = [...own.keys()].filter((k) => !f.has(k));
    const unexpected = f.names.filter((k) => !own.has(k));
    if (missing.length || unexpected.length)
      throw new Error(`${path}: adapter does not match the model: missing [${missing.join(', ')}], unexpected [${unexpected.join(', ')}]`);
    for (const [k, dst] of own) {
      const info = f.info(k);
      if (info.shape.length !== dst.ndim || info.shape.some((s, i) => s !== dst.shape[i]))
        throw new Error(`${path}: '${k}' is ${shapeStr(info.shape)} but the model's layer needs ${shapeStr(dst.shape)}`);
      const src = f.tensor(k, { backend: dst.backendName });
      assignValues(dst, src);
      src.dispose();
    }
  } catch (e) {
    deleteAdapter(model, name);
    throw e;
  }
  return config;
}

/** Writes adapter `name` of the model in PEFT's format. */
export function saveAdapter(model: Module, dir: string, config: LoraConfig, opts: { name?: string; baseModel?: string } = {}): void {
  const name = opts.name ?? 'default';
  const tensors = adapterTensors(model, name);
  if (!tensors.size) throw new Error(`saveAdapter: the model has no adapter named '${name}'`);
  mkdirSync(dir, { recursive: true });
  saveSafetensors(join(dir, 'adapter_model.safetensors'), Object.fromEntries(tensors), { format: 'pt' });
  writeJsonAtomic(join(dir, 'adapter_config.json'), {
    peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: opts.baseModel ?? config.baseModelNameOrPath ?? '', r: config.r,
    lora_alpha: config.alpha, lora_dropout: config.dropout ?? 0, target_modules: config.targetModules, use_rslora: config.useRslora ?? false,
    bias: 'none', fan_in_fan_out: false, inference_mode: true, init_lora_weights: true, modules_to_save: config.modulesToSave ?? null, use_dora: false,
  });
}

/**
 * Folds the active adapter into the model: every LoRA layer becomes W + s B A, every
 * modules_to_save wrapper becomes its active copy; the other adapters are freed. Returns the
 * number of LoRA layers merged.
 */
export function mergeLora(model: Module): number {
  let n = 0;
  for (const { parent, key, path, layer } of sites(model, isWrapper)) {
    if (layer instanceof ModulesToSaveWrapper) {
      if (layer.active !== null && layer.original_module instanceof Embedding && tiedEmbeddings(model))
        throw new Error(`mergeLora: '${path}' is a trained copy of an embedding tied to the LM head; a merged model cannot keep the head on the original weight (as the adapter runs it) while tying it to the new embedding. Save the adapter instead, or untie the embeddings before training`);
      const keepModule = layer.current();
      Reflect.set(parent, key, keepModule);
      for (const m of [layer.original_module, ...layer.adapters.map((a) => layer.modules_to_save.get(a))]) if (m !== keepModule) m.dispose();
      continue;
    }
    Reflect.set(parent, key, layer.merged());
    for (const a of layer.adapters) layer.deleteAdapter(a);
    layer.base_layer.dispose();
    n++;
  }
  return n;
}
