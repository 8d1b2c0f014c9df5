// sentence-transformers' folder layout, read and written (SentenceTransformer.save and each
// module's save in sentence-transformers 5.x): the backbone's HF files and tokenizer at the root,
// modules.json listing the module chain, sentence_bert_config.json (max_seq_length,
// do_lower_case), config_sentence_transformers.json (prompts, default_prompt_name,
// similarity_fn_name), 1_Pooling/config.json, 2_Dense/{config.json, model.safetensors} and an
// empty N_Normalize/. A plain HF folder (no modules.json) loads as backbone + mean pooling.
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Json, readJson, writeJsonAtomic } from '../io/hf_folder.js';
import { SafetensorsFile, saveSafetensors } from '../io/safetensors.js';
import { loadPretrained, savePretrained, type LoadOptions } from '../models/load.js';
import { noGrad } from '../tensor/grad_mode.js';
import { shapeStr } from '../tensor/layout.js';
import { type Backbone, type EmbedderSettings, Dense, SentenceEmbedder, asBackbone } from './model.js';
import { type PoolingMode, type PoolingSpec, poolingModes } from './pooling.js';

const ST = 'sentence_transformers.models.';
/** The sentence-transformers release whose save() this layout follows (checked against its source: v5.1.2 and master 85ec645 write the same). */
export const ST_LAYOUT_VERSION = '5.1.2';
const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'vocab.txt', 'vocab.json', 'merges.txt', 'tokenizer.model', 'added_tokens.json'];
const ACTIVATIONS: Record<string, 'tanh' | 'identity'> = { 'torch.nn.modules.activation.Tanh': 'tanh', 'torch.nn.modules.linear.Identity': 'identity' };
/** Pooling/config.json's flag per mode, in the order sentence-transformers writes them */
const MODE_KEYS: Record<string, PoolingMode> = {
  pooling_mode_cls_token: 'cls', pooling_mode_mean_tokens: 'mean', pooling_mode_max_tokens: 'max',
  pooling_mode_mean_sqrt_len_tokens: 'mean_sqrt_len_tokens', pooling_mode_weightedmean_tokens: 'weightedmean', pooling_mode_lasttoken: 'lasttoken',
};

const SIMILARITIES: readonly EmbedderSettings['similarityFnName'][] = ['cosine', 'dot', 'euclidean', 'manhattan'];

interface ModuleEntry { idx: number; name: string; path: string; type: string }

function readModules(file: string): ModuleEntry[] {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read modules.json (${(e as Error).message})`);
  }
  if (!Array.isArray(v)) throw new Error(`${file}: expected an array of modules`);
  return v.map((m: unknown, i) => {
    const e = m as Partial<ModuleEntry> | null;
    if (typeof e !== 'object' || e === null || typeof e.path !== 'string' || typeof e.type !== 'string')
      throw new Error(`${file}: entry ${i} must be an object with string "path" and "type"`);
    return { idx: e.idx ?? i, name: e.name ?? String(i), path: e.path, type: e.type };
  });
}

/** The pooling modes a Pooling/config.json turns on: one, or several concatenated (an error names the file). */
function readPooling(file: string): { mode: PoolingSpec; includePrompt: boolean; dim: number } {
  const c = readJson(file);
  const on = Object.keys(MODE_KEYS).filter((k) => c[k] === true);
  if (!on.length) throw new Error(`${file}: no pooling mode is on (one or more of ${Object.keys(MODE_KEYS).join(', ')} must be true)`);
  const modes = poolingModes(on.map((k) => MODE_KEYS[k]));
  const dim = c.word_embedding_dimension;
  if (typeof dim !== 'number') throw new Error(`${file}: word_embedding_dimension must be a number`);
  return { mode: modes.length === 1 ? modes[0] : modes, includePrompt: c.include_prompt !== false, dim };
}

function readDense(dir: string, opts: LoadOptions): Dense {
  const file = join(dir, 'config.json');
  const c = readJson(file);
  const act = ACTIVATIONS[String(c.activation_function)];
  if (!act) throw new Error(`${file}: activation_function ${JSON.stringify(c.activation_function)} is not supported (${Object.keys(ACTIVATIONS).join(', ')})`);
  const [nIn, nOut] = [c.in_features, c.out_features];
  if (typeof nIn !== 'number' || typeof nOut !== 'number') throw new Error(`${file}: in_features and out_features must be numbers`);
  const weights = join(dir, 'model.safetensors');
  if (!existsSync(weights)) throw new Error(`${dir}: no model.safetensors (pytorch_model.bin is not read; re-save the model with safe_serialization)`);
  const dense = new Dense(nIn, nOut, act, { bias: c.bias !== false, backend: opts.backend });
  using f = new SafetensorsFile(weights);
  for (const [name, p] of dense.namedParameters()) {
    if (!f.has(name)) throw new Error(`${weights}: missing tensor '${name}'`);
    const shape = f.info(name).shape;
    if (shape.length !== p.ndim || shape.some((s, i) => s !== p.shape[i])) throw new Error(`${weights}: '${name}' is ${shapeStr(shape)}, ${file} implies ${shapeStr(p.shape)}`);
    f.readInto(name, p);
  }
  return dense;
}

function readOptional(file: string): Json {
  return existsSync(file) ? readJson(file) : {};
}

/** Prompts, similarity and tokenization settings from the folder's config files. */
function readSettings(dir: string, root: string): Partial<EmbedderSettings> {
  const st = readOptional(join(dir, 'config_sentence_transformers.json'));
  const sb = readOptional(join(root, 'sentence_bert_config.json'));
  const tc = readOptional(join(root, 'tokenizer_config.json'));
  const prompts: Record<string, string> = {};
  for (const [k, v] of Object.entries((st.prompts as Json | undefined) ?? {}))
    if (typeof v === 'string') prompts[k] = v;
    else throw new Error(`${join(dir, 'config_sentence_transformers.json')}: prompts.${k} must be a string`);
  const s: Partial<EmbedderSettings> = { prompts, defaultPromptName: typeof st.default_prompt_name === 'string' ? st.default_prompt_name : null };
  const sim = st.similarity_fn_name;
  if (sim !== undefined && sim !== null) {
    if (!SIMILARITIES.includes(sim as EmbedderSettings['similarityFnName']))
      throw new Error(`${join(dir, 'config_sentence_transformers.json')}: similarity_fn_name ${JSON.stringify(sim)} is not one of ${SIMILARITIES.join(', ')}`);
    s.similarityFnName = sim as EmbedderSettings['similarityFnName'];
  }
  if (typeof sb.max_seq_length === 'number') s.maxSeqLength = sb.max_seq_length;
  else if (typeof tc.model_max_length === 'number' && tc.model_max_length < 1e6) s.maxSeqLength = tc.model_max_length;
  if (sb.do_lower_case === true) s.doLowerCase = true;
  if (tc.padding_side === 'left' || tc.padding_side === 'right') s.paddingSide = tc.padding_side;
  return s;
}

export interface LoadEmbedderOptions extends LoadOptions {
  /** pooling for a plain HF folder (default mean); a sentence-transformers folder's own pooling wins unless this is set */
  pooling?: PoolingSpec;
  normalize?: boolean;
}

/**
 * Loads a sentence-transformers folder, or any HF BERT / decoder folder as backbone + mean pooling.
 * @example const model = await loadEmbedder('./bge-small-en-v1.5')
 */
export async function loadEmbedder(dir: string, opts: LoadEmbedderOptions = {}): Promise<SentenceEmbedder> {
  if (opts.pooling) poolingModes(opts.pooling); // checked before the weights are read
  const modulesFile = join(dir, 'modules.json');
  const modules = existsSync(modulesFile) ? readModules(modulesFile) : [{ idx: 0, name: '0', path: '', type: `${ST}Transformer` }];
  const settings: Partial<EmbedderSettings> = {};
  let root = dir;
  let dense: { layer: Dense; file: string } | null = null;
  let pooled: { file: string; dim: number } | null = null;
  for (const [i, m] of modules.entries()) {
    const where = `${modulesFile}: module ${i} (${m.type})`;
    const p = join(dir, m.path);
    if ((i === 0) !== (m.type === `${ST}Transformer`)) throw new Error(`${where}: the first module, and only it, must be ${ST}Transformer`);
    if (m.type === `${ST}Transformer`) root = p;
    else if (m.type === `${ST}Pooling`) {
      const file = join(p, 'config.json');
      const { mode, includePrompt, dim } = readPooling(file);
      Object.assign(settings, { pooling: mode, includePrompt });
      pooled = { file, dim };
    } else if (m.type === `${ST}Dense`) dense = { layer: readDense(p, opts), file: join(p, 'config.json') };
    else if (m.type === `${ST}Normalize`) settings.normalize = true;
    else throw new Error(`${where}: not supported (Transformer, Pooling, Dense, Normalize)`);
  }
  const pre = await loadPretrained(root, opts);
  if (!pre.tokenizer) {
    pre.model.dispose();
    throw new Error(`${root}: no tokenizer (tokenizer.json, vocab.txt, ...) beside the model; an embedding model needs one`);
  }
  let backbone: Backbone;
  try {
    backbone = asBackbone(pre.model, root);
  } catch (e) {
    pre.model.dispose();
    throw e;
  }
  if (pooled && pooled.dim !== backbone.config.hiddenSize) {
    pre.model.dispose();
    throw new Error(`${pooled.file}: word_embedding_dimension ${pooled.dim} is not the backbone's hidden size ${backbone.config.hiddenSize}`);
  }
  const model = new SentenceEmbedder(backbone, pre.tokenizer, {
    ...readSettings(dir, root), ...settings,
    ...(opts.pooling ? { pooling: opts.pooling } : {}), ...(opts.normalize !== undefined ? { normalize: opts.normalize } : {}),
  }, dense?.layer ?? null);
  if (dense && dense.layer.linear.inFeatures !== model.pooledSize) {
    model.dispose();
    throw new Error(`${dense.file}: in_features ${dense.layer.linear.inFeatures} is not the pooled width ${model.pooledSize} (hidden ${model.hiddenSize} x ${poolingModes(model.settings.pooling).length} pooling modes)`);
  }
  model.source = { dir: root, hfConfig: pre.hfConfig };
  return model;
}

/** The modules.json entries for a model, with each module's folder as sentence-transformers names it. */
export function moduleEntries(model: SentenceEmbedder): ModuleEntry[] {
  const types = ['Transformer', 'Pooling', ...(model.dense ? ['Dense'] : []), ...(model.settings.normalize ? ['Normalize'] : [])];
  return types.map((t, idx) => ({ idx, name: String(idx), path: idx === 0 ? '' : `${idx}_${t}`, type: `${ST}${t}` }));
}

/**
 * Writes the model so that `SentenceTransformer(dir)` (and loadEmbedder) loads it.
 * @example saveEmbedder(model, './my-embedder')
 */
export function saveEmbedder(model: SentenceEmbedder, dir: string): void {
  const src = model.source;
  if (!src) throw new Error('saveEmbedder: the model has no source folder (its config.json and tokenizer files); load it with loadEmbedder');
  const s = model.settings;
  savePretrained(dir, { model: model.backbone, hfConfig: src.hfConfig });
  for (const f of TOKENIZER_FILES) if (existsSync(join(src.dir, f)) && src.dir !== dir) copyFileSync(join(src.dir, f), join(dir, f));
  writeJsonAtomic(join(dir, 'sentence_bert_config.json'), { max_seq_length: s.maxSeqLength, do_lower_case: s.doLowerCase });
  writeJsonAtomic(join(dir, 'config_sentence_transformers.json'), {
    model_type: 'SentenceTransformer', __version__: { sentence_transformers: ST_LAYOUT_VERSION },
    prompts: s.prompts, default_prompt_name: s.defaultPromptName, similarity_fn_name: s.similarityFnName,
  });
  const entries = moduleEntries(model);
  for (const e of entries.slice(1)) {
    const p = join(dir, e.path);
    mkdirSync(p, { recursive: true });
    if (e.type === `${ST}Pooling`) {
      const modes = poolingModes(s.pooling);
      const flags = Object.fromEntries(Object.entries(MODE_KEYS).map(([k, m]) => [k, modes.includes(m)]));
      writeJsonAtomic(join(p, 'config.json'), { word_embedding_dimension: model.hiddenSize, ...flags, include_prompt: s.includePrompt });
    } else if (e.type === `${ST}Dense` && model.dense) {
      const l = model.dense.linear;
      writeJsonAtomic(join(p, 'config.json'), {
        in_features: l.inFeatures, out_features: l.outFeatures, bias: l.bias !== null,
        activation_function: model.dense.activation === 'tanh' ? 'torch.nn.modules.activation.Tanh' : 'torch.nn.modules.linear.Identity',
      });
      noGrad(() => saveSafetensors(join(p, 'model.safetensors'), Object.fromEntries(model.dense!.namedParameters()), { format: 'pt' }));
    }
  }
  writeJsonAtomic(join(dir, 'modules.json'), entries);
}

