// Injecting LoRA into a model by module name, and PEFT's adapter format: adapter_config.json
// plus adapter_model.safetensors with keys base_model.model.<path>.lora_A.weight / lora_B.weight.
// Merging folds every adapter into its base Linear.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { readJson, writeJsonAtomic } from '../io/hf_folder.js';
import { SafetensorsFile, saveSafetensors } from '../io/safetensors.js';
import { shapeStr } from '../tensor/layout.js';
import type { Tensor } from '../tensor/tensor.js';
import { Linear } from '../nn/layers.js';
import { type Module, assignValues } from '../nn/module.js';
import { LoraLinear, type LoraOptions } from './lora_linear.js';

export interface LoraConfig extends LoraOptions {
  /** module names (q_proj, v_proj, ...) or 'all-linear' (every Linear but the LM head) */
  targetModules: string[] | 'all-linear';
}

const PREFIX = 'base_model.model.';

/** Every (parent, key, child) whose child is a Linear or LoraLinear, with its dotted path. */
function linears(model: Module): { parent: Module; key: string; path: string; layer: Linear | LoraLinear }[] {
  const out: { parent: Module; key: string; path: string; layer: Linear | LoraLinear }[] = [];
  for (const [path, m] of model.namedModules())
    for (const [key, v] of Object.entries(m))
      if (v instanceof Linear || v instanceof LoraLinear) out.push({ parent: m, key, path: path ? `${path}.${key}` : key, layer: v });
  return out;
}

/**
 * Wraps the matching Linear layers in LoraLinear and freezes everything else; returns the paths.
 * @example injectLora(model, { r: 16, alpha: 16, targetModules: 'all-linear' })
 */
export function injectLora(model: Module, config: LoraConfig): string[] {
  model.requiresGrad_(false);
  const wanted = config.targetModules;
  const hits: string[] = [];
  for (const { parent, key, path, layer } of linears(model)) {
    if (layer instanceof LoraLinear) throw new Error(`injectLora: ${path} already has an adapter`);
    const match = wanted === 'all-linear' ? key !== 'lm_head' : wanted.includes(key);
    if (!match) continue;
    Reflect.set(parent, key, new LoraLinear(layer, config));
    hits.push(path);
  }
  if (!hits.length) throw new Error(`injectLora: target modules [${wanted}] matched no Linear layer of the model`);
  return hits;
}

/** The adapters of a model by path. */
export function loraLayers(model: Module): Map<string, LoraLinear> {
  return new Map(linears(model).flatMap(({ path, layer }) => (layer instanceof LoraLinear ? [[path, layer] as [string, LoraLinear]] : [])));
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
  if (Array.isArray(c.modules_to_save) && c.modules_to_save.length) throw new Error(`${file}: 'modules_to_save' is not supported yet`);
  return { r: r as number, alpha, targetModules: targets, dropout: typeof c.lora_dropout === 'number' ? c.lora_dropout : 0, useRslora: c.use_rslora === true };
}

/** Injects the adapter in dir into model and loads its weights (strict: every key, every shape). */
export function loadAdapter(model: Module, dir: string): LoraConfig {
  const config = readAdapterConfig(dir);
  const path = join(dir, 'adapter_model.safetensors');
  if (!existsSync(path)) throw new Error(`${dir}: no adapter_model.safetensors`);
  injectLora(model, config);
  using f = new SafetensorsFile(path);
  const own = new Map<string, Tensor>();
  for (const [p, l] of loraLayers(model)) {
    own.set(`${PREFIX}${p}.lora_A.weight`, l.lora_A.weight);
    own.set(`${PREFIX}${p}.lora_B.weight`, l.lora_B.weight);
  }
  const missing = [...own.keys()].filter((k) => !f.has(k));
  const unexpected = f.names.filter((k) => !own.has(k));
  if (missing.length || unexpected.length)
    throw new Error(`${path}: adapter does not match the model: missing [${missing.join(', ')}], unexpected [${unexpected.join(', ')}]`);
  for (const [k, dst] of own) {
    const info = f.info(k);
    if (info.shape.length !== 2 || info.shape[0] !== dst.shape[0] || info.shape[1] !== dst.shape[1])
      throw new Error(`${path}: '${k}' is ${shapeStr(info.shape)} but the model's layer needs ${shapeStr(dst.shape)}`);
    const src = f.tensor(k, { backend: dst.backendName });
    assignValues(dst, src);
    src.dispose();
  }
  return config;
}

/** Writes the model's adapters in PEFT's format. */
export function saveAdapter(model: Module, dir: string, config: LoraConfig, baseModel = ''): void {
  mkdirSync(dir, { recursive: true });
  const tensors: Record<string, Tensor> = {};
  for (const [p, l] of loraLayers(model)) {
    tensors[`${PREFIX}${p}.lora_A.weight`] = l.lora_A.weight;
    tensors[`${PREFIX}${p}.lora_B.weight`] = l.lora_B.weight;
  }
  saveSafetensors(join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt' });
  writeJsonAtomic(join(dir, 'adapter_config.json'), {
    peft_type: 'LORA', task_type: 'CAUSAL_LM', base_model_name_or_path: baseModel, r: config.r, lora_alpha: config.alpha,
    lora_dropout: config.dropout ?? 0, target_modules: config.targetModules, use_rslora: config.useRslora ?? false, bias: 'none',
    fan_in_fan_out: false, inference_mode: true, init_lora_weights: true, modules_to_save: null, use_dora: false,
  });
}

/** Folds every adapter into its base weight (W + s B A) and removes the wrappers. */
export function mergeLora(model: Module): number {
  let n = 0;
  for (const { parent, key, layer } of linears(model)) {
    if (!(layer instanceof LoraLinear)) continue;
    const merged = layer.merged();
    Reflect.set(parent, key, merged);
    layer.lora_A.weight.dispose();
    layer.lora_B.weight.dispose();
    layer.base_layer.dispose();
    n++;
  }
  return n;
}
