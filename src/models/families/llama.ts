// Llama and the families that differ from it only by flags: Mistral (sliding window), Qwen2
// (qkv bias), Qwen3 (q/k norms), Mixtral (sparse MoE). Reads HF config.json fields.
import type { DecoderConfig, RopeScaling } from '../config.js';
import { DEFAULT_CONFIG } from '../config.js';
import { ConfigReader, type Json } from './hf_config.js';

/** rope_scaling (or the newer rope_parameters) -> RopeScaling. */
export function ropeScaling(r: ConfigReader): RopeScaling | null {
  const s = r.object('rope_scaling') ?? r.object('rope_parameters');
  if (!s) return null;
  const sr = new ConfigReader(s, `${r.file} rope_scaling`);
  const type = sr.str('rope_type', typeof s.type === 'string' ? s.type : 'default');
  const known = ['default', 'linear', 'dynamic', 'yarn', 'llama3', 'longrope', 'su'];
  if (!known.includes(type)) throw new Error(`${r.file}: rope_scaling type '${type}' is not supported (supported: ${known.join(', ')})`);
  const floats = (f: string): number[] | undefined => (Array.isArray(s[f]) ? (s[f] as number[]) : undefined);
  return {
    type: type === 'su' ? 'longrope' : (type as RopeScaling['type']),
    factor: sr.has('factor') ? sr.num('factor') : 1,
    lowFreqFactor: sr.has('low_freq_factor') ? sr.num('low_freq_factor') : undefined,
    highFreqFactor: sr.has('high_freq_factor') ? sr.num('high_freq_factor') : undefined,
    originalMaxPositionEmbeddings: sr.has('original_max_position_embeddings') ? sr.int('original_max_position_embeddings')
      : r.has('original_max_position_embeddings') ? r.int('original_max_position_embeddings') : undefined,
    betaFast: sr.has('beta_fast') ? sr.num('beta_fast') : undefined,
    betaSlow: sr.has('beta_slow') ? sr.num('beta_slow') : undefined,
    attentionFactor: sr.has('attention_factor') ? sr.num('attention_factor') : undefined,
    shortFactor: floats('short_factor'),
    longFactor: floats('long_factor'),
  };
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
  const H = r.int('num_attention_heads');
  const D = r.int('hidden_size');
  const headDim = r.has('head_dim') ? r.int('head_dim') : D / H;
  if (!Number.isInteger(headDim)) throw new Error(`${file}: hidden_size ${D} is not divisible by num_attention_heads ${H}`);
  const L = r.int('num_hidden_layers');
  const window = r.has('sliding_window') && r.bool('use_sliding_window', true) ? r.int('sliding_window') : 0;
  return {
    ...DEFAULT_CONFIG,
    modelType: r.str('model_type'),
    vocabSize: r.int('vocab_size'),
    hiddenSize: D,
    intermediateSize: r.int('intermediate_size'),
    numLayers: L,
    numHeads: H,
    numKvHeads: r.int('num_key_value_heads', H),
    headDim,
    rmsNormEps: r.num('rms_norm_eps', 1e-6),
    ropeTheta: r.num('rope_theta', 10000),
    ropeScaling: ropeScaling(r),
    partialRotaryFactor: r.num('partial_rotary_factor', 1),
    maxPositionEmbeddings: r.int('max_position_embeddings', 2048),
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

/** Mixtral: every MLP is a sparse MoE of SwiGLU experts. */
export function mixtral(raw: Json, file: string): DecoderConfig {
  const r = new ConfigReader(raw, file);
  const c = baseConfig(raw, file);
  return {
    ...c,
    moe: { numExperts: r.int('num_local_experts'), topK: r.int('num_experts_per_tok'), auxLossCoef: r.num('router_aux_loss_coef', 0.001) },
    // Mixtral's eager mask ignores sliding_window in 4.44 (only flash attention applies it)
    slidingWindows: new Array(c.numLayers).fill(0),
  };
}
