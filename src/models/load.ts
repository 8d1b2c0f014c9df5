// loadPretrained / savePretrained: an HF folder in, an HF folder out (config.json,
// generation_config.json, model.safetensors). Loading is strict: every model tensor must be in
// the checkpoint with its shape, and every checkpoint tensor must belong to the model. The model
// is built lazily (meta parameters) and each tensor allocated in its final dtype as it is read, so
// the load's peak is the loaded model plus a few MiB (PyTorch's low_cpu_mem_usage / meta device).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CheckpointFolder, type Json, readJson, saveCheckpointFolder } from '../io/hf_folder.js';
import { type DType, isFloat } from '../tensor/dtype.js';
import { shapeStr } from '../tensor/layout.js';
import { isMeta } from '../tensor/meta.js';
import type { Tensor } from '../tensor/tensor.js';
import { defaultBackend } from '../backend/index.js';
import type { BackendName } from '../backend/kernels.js';
import { empty } from '../ops/dispatch.js';
import type { Module } from '../nn/module.js';
import { type AnyModel, buildModel, finishLoading, isSpeechModel } from './registry.js';
import { loadAdapter } from '../lora/peft.js';
import { bnbCheckpoint, loadBnbLinears } from '../quant/bnb.js';
import { loadKestrelQuantLinears, readKestrelQuantConfig } from '../quant/kestrel_format.js';
import { type InferenceQuant, checkInferenceQuant, quantizeModel, usePrefillDtype } from '../quant/quantize_model.js';
import { type Tokenizer, loadTokenizer } from '../tokenizer/index.js';
import { CausalLM } from './causal_lm.js';
import { loadSparsity, saveSparsity } from './sparse_attention.js';
import { Gpt2LMHeadModel } from './gpt2.js';
import { BertModel } from './bert.js';
import { DecoderBaseModel, isBaseCheckpoint } from './base_model.js';

export interface LoadOptions {
  /** parameter dtype; 'auto' keeps the checkpoint's (default float32, as transformers does) */
  dtype?: DType | 'auto';
  backend?: BackendName;
  /** a folder to take the tokenizer from (default: the model folder) */
  tokenizer?: string;
  /** a PEFT LoRA adapter folder to apply after loading */
  adapter?: string;
  /**
   * quantized inference: every Linear of a decoder (the head included; a tied head gets a quantized
   * copy of the embedding) stored as bf16, int8 (per-row scales) or q4 (groups of 32), multiplied by
   * the decode GEMV (native/quant_gemv.cc); frozen, for generation
   */
  quant?: InferenceQuant;
}

const TOKENIZER_FILES = ['tokenizer.json', 'vocab.json', 'tokenizer.model', 'vocab.txt'];

/** Tensors HF checkpoints may carry that are derived state, not weights. */
const DERIVED = /(^|\.)rotary_emb\.inv_freq$|\.attn\.bias$|\.attn\.masked_bias$/;

/** Where loadWeights reads named tensors from: an HF folder (CheckpointFolder) or a GGUF file (gguf/import.ts). */
export type WeightSource = Pick<CheckpointFolder, 'dir' | 'source' | 'names' | 'has' | 'info' | 'file' | 'readInto'>;

export interface LoadWeightsOptions {
  /** parameter dtype; 'auto' keeps the checkpoint's (default float32, as transformers does) */
  dtype?: DType | 'auto';
  /** checkpoint tensors already consumed elsewhere (the bitsandbytes layers) */
  used?: ReadonlySet<string>;
  /** the config named in mismatch errors (default <dir>/config.json) */
  configFile?: string;
  /** where lazily built (meta) parameters are allocated (default: the default backend) */
  backend?: BackendName;
}

/**
 * Reads every checkpoint tensor into the module's matching parameter or buffer (strict: every one
 * present with its shape, none left over). A meta (lazily built) tensor is allocated here, once, in
 * its final dtype, and the file's bytes go straight into it (converted on the way when the file's
 * dtype differs), so the load never holds more than the model plus a few MiB of staging.
 * @example const model = buildModel(folder.config, 'config.json', { backend: 'meta' }); loadWeights(model, folder, { dtype: 'auto' })
 */
export function loadWeights(model: Module, folder: WeightSource, opts: LoadWeightsOptions = {}): void {
  const configFile = opts.configFile ?? join(folder.dir, 'config.json');
  const used = opts.used ?? new Set<string>();
  const own = model.stateDict();
  // own keys only: a tensor named '__proto__' or 'constructor' is unexpected, not inherited
  const mine = (n: string): boolean => Object.hasOwn(own, n);
  const missing = Object.keys(own).filter((n) => !folder.has(n));
  const unexpected = folder.names.filter((n) => !mine(n) && !used.has(n) && !DERIVED.test(n));
  if (missing.length || unexpected.length)
    throw new Error(`${folder.source}: checkpoint does not match the model ${configFile} describes: missing [${missing.join(', ')}], unexpected [${unexpected.join(', ')}]`);
  // every shape and kind is checked before the first byte is read, so a mismatch costs no I/O
  for (const [name, dst] of Object.entries(own)) checkTensor(folder, name, dst, configFile);
  const dtype = opts.dtype ?? 'float32';
  const first = folder.names.find(mine);
  const target: DType | null = dtype !== 'auto' ? dtype : first ? folder.info(first).dtype : null;
  const backend = opts.backend ?? defaultBackend().name;
  const names = new Map(Object.entries(own).map(([n, t]) => [t, n]));
  model.mapTensors((t) => {
    const name = names.get(t);
    if (name === undefined) return t; // a non-persistent buffer: not in the checkpoint
    if (!isMeta(t)) {
      folder.readInto(name, t);
      return t;
    }
    const final = empty(t.shape, target && isFloat(target) && isFloat(t.dtype) ? target : t.dtype, { backend, tag: 'param' });
    try {
      folder.readInto(name, final);
    } catch (e) {
      final.dispose();
      throw e;
    }
    return final;
  });
  // the parameters are in target already (to() aliases them); this converts the float buffers
  if (target && (dtype === 'auto' || target !== 'float32')) model.to(target);
}

/** Throws unless checkpoint tensor `name` can load into dst: the same shape, float into float only. */
function checkTensor(folder: WeightSource, name: string, dst: Tensor, configFile: string): void {
  const info = folder.info(name);
  const where = `${folder.file(name)}: tensor '${name}'`;
  if (info.shape.length !== dst.shape.length || info.shape.some((s, i) => s !== dst.shape[i]))
    throw new Error(`${where} is ${shapeStr(info.shape)} but ${configFile} implies ${shapeStr(dst.shape)}`);
  // casting integers into a float weight (or back) would load a silently different model; the
  // legitimately integer weights (bitsandbytes) were taken by loadBnbLinears and are not in `own`
  if (isFloat(info.dtype) !== isFloat(dst.dtype))
    throw new Error(`${where} is stored as ${info.fileDtype}, but the model's parameter is ${dst.dtype}`);
}

/**
 * A model of its own class (Whisper, EnCodec) from an HF folder: config.json checked for
 * `modelType` (a missing model_type passes when `typeOptional`), the model built lazily by
 * `build`, its weights loaded strictly, `after` run, and eval mode; freed again on any failure.
 * @example loadModelFolder(dir, { modelType: 'encodec', build: (c, f) => new EncodecModel(encodecConfig(c, f), { backend: 'meta' }) })
 */
export function loadModelFolder<M extends Module>(dir: string, o: { modelType: string; typeOptional?: boolean; build: (config: Json, configFile: string) => M; backend?: BackendName; after?: (model: M) => void }): M {
  const folder = new CheckpointFolder(dir);
  let model: M | null = null;
  try {
    const configFile = join(dir, 'config.json');
    const type = folder.config.model_type;
    if (type !== o.modelType && !(o.typeOptional && type === undefined)) throw new Error(`${configFile}: model_type ${JSON.stringify(type)} is not '${o.modelType}'`);
    model = o.build(folder.config, configFile);
    loadWeights(model, folder, { configFile, backend: o.backend });
    o.after?.(model);
    return model.eval();
  } catch (e) {
    model?.dispose();
    throw e;
  } finally {
    folder.close();
  }
}

export interface Pretrained<M extends AnyModel = AnyModel> {
  model: M;
  /** the model's typed config (model.config) */
  config: M['config'];
  /** the folder's tokenizer, or null when it ships none */
  tokenizer: Tokenizer | null;
  /** the folder's config.json and generation_config.json as read */
  hfConfig: Json;
  generationConfig: Json | null;
}

/**
 * Loads an HF model folder: a decoder family, GPT-2, BERT, a *ForSequenceClassification, Whisper
 * (WhisperForConditionalGeneration) or EnCodec (EncodecModel), as config.json's model_type says.
 * A path ending in .gguf loads a GGUF file instead (gguf/import.ts).
 * @example const { model } = await k.loadPretrained('./SmolLM2-135M')
 */
export async function loadPretrained(dir: string, opts: LoadOptions = {}): Promise<Pretrained> {
  // a .gguf file (llama.cpp's format); imported lazily: gguf/ builds on this module
  if (dir.toLowerCase().endsWith('.gguf')) return (await import('../gguf/import.js')).loadGguf(dir, opts);
  const folder = new CheckpointFolder(dir);
  let model: AnyModel | null = null;
  try {
    const configFile = join(dir, 'config.json');
    const backend = opts.backend ?? defaultBackend().name;
    // built lazily: each parameter is allocated once, in its final dtype and format, as it is read
    // a base model's weights (no `model.` prefix, no lm_head) load as one whatever architectures says
    model = buildModel(folder.config, configFile, { backend: 'meta' }, { base: isBaseCheckpoint((n) => folder.has(n)) || undefined });
    const kestrelQuant = readKestrelQuantConfig(folder.config, configFile);
    const used = kestrelQuant ? loadKestrelQuantLinears(model, folder, configFile, { backend }) : loadBnbLinears(model, folder, configFile, { backend });
    loadWeights(model, folder, { dtype: opts.dtype ?? 'float32', used, configFile, backend });
    finishLoading(model);
    if (kestrelQuant) usePrefillDtype(model); // `kestrel quantize` writes inference weights
    if (model instanceof CausalLM) loadSparsity(dir, model);
    if (opts.quant) quantizeForInference(model, checkInferenceQuant(opts.quant, 'loadPretrained: quant'));
    if (opts.adapter) loadAdapter(model, opts.adapter, { baseModel: dir });
    model.eval();
    const gen = join(dir, 'generation_config.json');
    const tokenizerDir = opts.tokenizer ?? dir;
    const tokenizer = TOKENIZER_FILES.some((f) => existsSync(join(tokenizerDir, f))) ? await loadTokenizer(tokenizerDir) : null;
    return { model, config: model.config, tokenizer, hfConfig: folder.config, generationConfig: existsSync(gen) ? readJson(gen) : null };
  } catch (e) {
    model?.dispose(); // a failed load frees what it allocated
    throw e;
  } finally {
    folder.close();
  }
}

/** Quantizes a loaded causal LM's Linears (and head) in place for generation (LoadOptions.quant); a prompt's prefill then multiplies in bf16 where the CPU does so natively, elsewhere with int8 activations where the kernel has an integer product (usePrefillDtype). */
export function quantizeForInference(model: AnyModel, type: InferenceQuant): string[] {
  if (!(model instanceof CausalLM)) throw new Error(`quant ${type}: quantized inference takes a decoder-family causal LM, got ${model.constructor.name}`);
  const tiedHead = model.lm_head ? undefined : model.model.embed_tokens.weight;
  const done = quantizeModel(model, { type, head: true, tiedHead });
  usePrefillDtype(model);
  return done;
}

/** A causal LM (decoder family or GPT-2): loadPretrained, refusing encoder-only checkpoints. */
export async function loadCausalLM(dir: string, opts: LoadOptions = {}): Promise<Pretrained<CausalLM | Gpt2LMHeadModel>> {
  const p = await loadPretrained(dir, opts);
  const { model } = p;
  if (!(model instanceof CausalLM || model instanceof Gpt2LMHeadModel)) {
    model.dispose();
    const what = model instanceof BertModel ? `model_type '${model.config.modelType}' is an encoder`
      : model instanceof DecoderBaseModel ? 'the folder holds a base model without an LM head (embed_tokens/layers/norm weights, as embedding models ship; kestrel embed and loadEmbedder read it)'
      : isSpeechModel(model) ? `model_type '${String(p.hfConfig.model_type)}' is a speech model (Whisper: kestrel transcribe / finetune --task asr; EnCodec: a codec for --task tts)`
      : 'the folder holds a sequence-classification model';
    throw new Error(`${dir}: ${what}, not a causal LM`);
  }
  return { ...p, model, config: model.config };
}

/** Writes an HF folder that transformers (and loadPretrained) loads; quantized layers in bitsandbytes' layout. */
export function savePretrained(dir: string, p: { model: Module; hfConfig: Json; generationConfig?: Json | null }): void {
  const c = bnbCheckpoint(p.model, p.hfConfig);
  try {
    saveCheckpointFolder(dir, { config: c.config, generationConfig: p.generationConfig, tensors: c.tensors });
    if (p.model instanceof CausalLM) saveSparsity(dir, p.model);
  } finally {
    c.dispose();
  }
}
