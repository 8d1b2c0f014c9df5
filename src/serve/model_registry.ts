// The models a server answers for, by the `model` name requests give: each --model folder (named
// by its folder, or NAME=DIR), and each --adapter NAME=DIR, a PEFT LoRA adapter loaded into the
// first model under its own name (one base in memory, the adapter switched per job).
import { basename, resolve } from 'node:path';
import { type Pretrained, loadCausalLM } from '../models/load.js';
import type { CausalLM } from '../models/causal_lm.js';
import type { Gpt2LMHeadModel } from '../models/gpt2.js';
import { loadAdapter, setAdapter } from '../lora/peft.js';
import type { InferenceQuant } from '../quant/quantize_model.js';
import type { Tokenizer } from '../tokenizer/index.js';
import '../infer/index.js';

export interface ServedModel {
  id: string;
  /** the loaded base model (shared by its adapters) */
  pretrained: Pretrained<CausalLM | Gpt2LMHeadModel>;
  tokenizer: Tokenizer;
  adapter: string | null;
  /** the folder the weights came from (the adapter's, for an adapter) */
  dir: string;
  /** positions the model can attend over: prompt + generated tokens must fit */
  contextLength: number;
  /** the ids that end a completion: the tokenizer's eos and generation_config.json's */
  eosTokenIds: number[];
  created: number;
}

/** `NAME=DIR` or `DIR` (named by the folder). */
export function namedPath(spec: string, flag: string): { name: string; dir: string } {
  const eq = spec.indexOf('=');
  const name = eq > 0 ? spec.slice(0, eq) : basename(resolve(spec));
  const dir = eq > 0 ? spec.slice(eq + 1) : spec;
  if (!name || !dir) throw new Error(`${flag} '${spec}': expected DIR or NAME=DIR`);
  return { name, dir };
}

function eosIds(p: Pretrained): number[] {
  const eos = new Set<number>(p.tokenizer?.eosTokenIds ?? []);
  const gc = p.generationConfig?.eos_token_id;
  for (const id of Array.isArray(gc) ? gc : [gc]) if (typeof id === 'number') eos.add(id);
  return [...eos];
}

export class ModelRegistry {
  private readonly byId = new Map<string, ServedModel>();

  /** Loads every model (quantized for inference with `quant`) and adapter; an error names the flag and folder that failed. */
  static async load(models: string[], adapters: string[], quant?: InferenceQuant): Promise<ModelRegistry> {
    const reg = new ModelRegistry();
    if (!models.length) throw new Error('--model DIR is required (repeat it to serve several)');
    const created = Math.floor(Date.now() / 1000);
    try {
      for (const spec of models) {
        const { name, dir } = namedPath(spec, '--model');
        await reg.loadFolder(name, dir, '--model ', created, quant);
      }
      const base = [...reg.byId.values()][0];
      for (const spec of adapters) {
        const { name, dir } = namedPath(spec, '--adapter');
        reg.loadAdapter(name, dir, base.id, '--adapter ');
      }
      return reg;
    } catch (e) {
      reg.dispose();
      throw e;
    }
  }

  /**
   * Loads one HF folder (or .gguf file), its Linears quantized for inference with `quant` (bf16,
   * int8, q4: the decode GEMV), and serves it as `name`; the error names the folder (prefixed by `what`).
   * @example await registry.loadFolder('tiny', '/models/tiny')
   */
  async loadFolder(name: string, dir: string, what = '', created = Math.floor(Date.now() / 1000), quant?: InferenceQuant): Promise<ServedModel> {
    if (this.byId.has(name)) throw new Error(`a model named '${name}' is already loaded`);
    const p = await loadCausalLM(dir, quant ? { quant } : {}).catch((e: Error) => Promise.reject(new Error(`${what}${dir}: ${e.message}`)));
    if (!p.tokenizer) {
      p.model.dispose();
      throw new Error(`${what}${dir}: the folder has no tokenizer (tokenizer.json, vocab.json, tokenizer.model); the server needs one to read prompts and write text`);
    }
    const c = p.model.config;
    const contextLength = 'maxPositions' in c ? c.maxPositions : c.maxPositionEmbeddings;
    const m: ServedModel = { id: name, pretrained: p, tokenizer: p.tokenizer, adapter: null, dir, contextLength, eosTokenIds: eosIds(p), created };
    this.add(m);
    return m;
  }

  /**
   * Loads a PEFT adapter into the loaded base `baseId` and serves it as `name` (the base stays
   * served without it); the error names the folder (prefixed by `what`).
   * @example registry.loadAdapter('tiny-ft', '/jobs/1234', 'tiny')
   */
  loadAdapter(name: string, dir: string, baseId: string, what = ''): ServedModel {
    const base = this.byId.get(baseId);
    if (!base || base.adapter !== null) throw new Error(`${what}${dir}: no loaded base model named '${baseId}' to load the adapter into`);
    if (this.byId.has(name)) throw new Error(`a model named '${name}' is already loaded`);
    try {
      loadAdapter(base.pretrained.model, dir, { name, baseModel: base.dir });
    } catch (e) {
      throw new Error(`${what}${dir}: ${(e as Error).message}`);
    } finally {
      // requests choose their adapter per job; none is active between them
      setAdapter(base.pretrained.model, null);
    }
    const m: ServedModel = { ...base, id: name, adapter: name, dir };
    this.add(m);
    return m;
  }

  /** Frees a base model loaded under `id` (false when none is); its adapters go with it. */
  remove(id: string): boolean {
    const m = this.byId.get(id);
    if (!m || m.adapter !== null) return false;
    for (const [other, o] of this.byId) if (o.pretrained === m.pretrained) this.byId.delete(other);
    m.pretrained.model.dispose();
    return true;
  }

  private add(m: ServedModel): void {
    if (this.byId.has(m.id)) throw new Error(`two served models are named '${m.id}': name them with NAME=DIR`);
    this.byId.set(m.id, m);
  }

  get(id: string): ServedModel | undefined {
    return this.byId.get(id);
  }

  list(): ServedModel[] {
    return [...this.byId.values()];
  }

  dispose(): void {
    for (const m of this.byId.values()) if (m.adapter === null) m.pretrained.model.dispose();
    this.byId.clear();
  }
}
