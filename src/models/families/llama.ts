// Llama and the families that differ from it only by flags: Mistral (sliding window), Qwen2
// (qkv bias), Qwen3 (q/k norms), Mixtral (sparse MoE). Reads HF config.json fields.
import type { DecoderConfig, RopeScaling } from '../config.js';
import { DEFAULT_CONFIG } from '../config.js';
import { CONFIG_LIMITS, ConfigReader, type Json } from './hf_config.js';

/** Keys each rope type requires (transformers' modeling_rope_utils._validate_*_rope_parameters). */
const ROPE_REQUIRED: Record<RopeScaling['type'], string[]> = {
  default: [], linear: ['factor'], dynamic: ['factor'], yarn: ['factor'],
  llama3: ['factor', 'original_max_position_embeddings', 'low_freq_factor', 'high_freq_factor'],
  longrope: ['short_factor', 'long_factor'],
};

/** rope_scaling (or the newer rope_parameters) -> RopeScaling; `rotaryDim` sizes LongRoPE's factor lists. */
export function ropeScaling(r: ConfigReader, rotaryDim: number): RopeScaling | null {
  const key = r.has('rope_scaling') ? 'rope_scaling' : 'rope_parameters';
  const s = r.object(key);
  if (!s) return null;
  const sr = new ConfigReader(s, r.file, `${key}.`);
  const name = sr.has('rope_type') ? sr.str('rope_type') : sr.str('type', 'default');
  const known = ['default', 'linear', 'dynamic', 'yarn', 'llama3', 'longrope', 'su'];
  if (!known.includes(name)) throw new Error(`${r.file}: ${key} type '${name}' is not supported (supported: ${known.join(', ')})`);
  const type = name === 'su' ? 'longrope' : (name as RopeScaling['type']);
  for (const f of ROPE_REQUIRED[type]) if (!sr.has(f)) throw new Error(`${r.file}: missing required field '${key}.${f}' (rope type ${type})`);
  // every factor divides or scales a frequency: 0, a negative or a non-number gives NaN or nonsense
  const opt = (f: string): number | undefined => (sr.has(f) ? sr.positive(f) : undefined);
  const factors = (f: string): number[] | undefined => {
    if (!sr.has(f)) return undefined;
    const v = s[f];
    if (!Array.isArray(v) || v.length !== rotaryDim / 2 || !v.every((x) => typeof x === 'number' && Number.isFinite(x) && x > 0))
      throw sr.error(f, `must be a list of ${rotaryDim / 2} numbers > 0 (half the rotary dim), got ${JSON.stringify(v)}`);
    return v as number[];
  };
  const scaling: RopeScaling = {
    type,
    factor: opt('factor') ?? 1,
    lowFreqFactor: opt('low_freq_factor'),
    highFreqFactor: opt('high_freq_factor'),
    originalMaxPositionEmbeddings: sr.has('original_max_position_embeddings') ? sr.size('original_max_position_embeddings', CONFIG_LIMITS.positions)
      : r.has('original_max_position_embeddings') ? r.size('original_max_position_embeddings', CONFIG_LIMITS.positions) : undefined,
    betaFast: opt('beta_fast'),
    betaSlow: opt('beta_slow'),
    attentionFactor: opt('attention_factor'),
    shortFactor: factors('short_factor'),
    longFactor: factors('long_factor'),
  };
  const [low, high] = [scaling.lowFreqFactor ?? 1, scaling.highFreqFactor ?? 4];
  if (type === 'llama3' && !(high > low)) throw sr.error('high_freq_factor', `(${high}) must be greater than low_freq_factor (${low})`);
  return scaling;
}

function activation(name: string, file: string): DecoderConfig['activation'] {
  if (name === 'silu' || name === 'swish') return 'silu';
  if (name === 'gelu_pytorch_tanh' || name === 'gelu_new' || name === 'gelu_fast') return 'gelu_tanh';
  if (name === 'gelu') return 'gelu';
  throw new Error(`${file}: hidden_act '${name}' is not supported (silu, gelu, gelu_pytorch_tanh)`);
}

/** The fields every Llama-like config.json shares. */
export function baseConfig(raw: Json, file: string): DecoderConfig {
  const r = new ConfigReader(raw, file);
  const H = r.size('num_attention_heads', CONFIG_LIMITS.heads);
  const D = r.size('hidden_size', CONFIG_LIMITS.hidden);
  if (!r.has('head_dim') && D % H !== 0) throw r.error('hidden_size', `(${D}) is not divisible by num_attention_heads (${H}), and no head_dim is given`);
  const headDim = r.has('head_dim') ? r.size('head_dim', CONFIG_LIMITS.headDim) : D / H;
  const L = r.size('num_hidden_layers', CONFIG_LIMITS.layers);
  const window = r.has('sliding_window') && r.bool('use_sliding_window', true) ? r.int('sliding_window') : 0;
  const partialRotaryFactor = r.positive('partial_rotary_factor', 1);
  return {
    ...DEFAULT_CONFIG,
    modelType: r.str('model_type'),
    vocabSize: r.size('vocab_size', CONFIG_LIMITS.vocab),
    hiddenSize: D,
    intermediateSize: r.size('intermediate_size', CONFIG_LIMITS.intermediate),
    numLayers: L,
    numHeads: H,
    numKvHeads: r.size('num_key_value_heads', CONFIG_LIMITS.heads, H),
    headDim,
    rmsNormEps: r.positive('rms_norm_eps', 1e-6),
    ropeTheta: r.positive('rope_theta', 10000),
    ropeScaling: ropeScaling(r, Math.floor(headDim * partialRotaryFactor)),
    partialRotaryFactor,
    maxPositionEmbeddings: r.size('max_position_embeddings', CONFIG_LIMITS.positions, 2048),
    tieWordEmbeddings: r.bool('tie_word_embeddings', false),
    qkvBias: r.bool('attention_bias', false),
    oBias: r.bool('attention_bias', false),
    mlpBias: r.bool('mlp_bias', false),
    activation: activation(r.str('hidden_activation', r.str('hidden_act', 'silu')), file),
    slidingWindows: new Array(L).fill(window),
    attentionScale: 1 / Math.sqrt(headDim),
    bosTokenId: r.ids('bos_token_id')[0] ?? null,
    eosTokenIds: r.ids('eos_token_id'),
    padTokenId: r.ids('pad_token_id')[0] ?? null,
    initializerRange: r.num('initializer_range', 0.02),
  };
}

export const llama = (raw: Json, file: string): DecoderConfig => baseConfig(raw, file);

/** Mistral honours sliding_window in its eager mask (query i sees keys i - window < j <= i). */
export const mistral = (raw: Json, file: string): DecoderConfig => baseConfig(raw, file);

/** Qwen2: biases on q/k/v but not o_proj; sliding windows only when use_sliding_window. */
export function qwen2(raw: Json, file: string): DecoderConfig {
  const r = new ConfigReader(raw, file);
  const c = baseConfig({ ...raw, sliding_window: r.bool('use_sliding_window', false) ? raw.sliding_window : null }, file);
  return { ...c, qkvBias: true, oBias: false, slidingWindows: new Array(c.numLayers).fill(0) };
}

/** Qwen3: RMSNorm over each head of q and k before RoPE; no qkv bias by default. */
export function qwen3(raw: Json, file: string): DecoderConfig {
  const c = baseConfig({ ...raw, sliding_window: null }, file);
  return { ...c, qkNorm: true };
}
