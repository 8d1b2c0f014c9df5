// Gemma (GeGLU, sqrt(hidden) embedding scale, (1 + w) RMSNorm, tied head) and Gemma 2 (adds
// alternating sliding-window layers, attention and final logit soft-capping, sandwich norms).
import type { DecoderConfig } from '../config.js';
import { baseConfig } from './llama.js';
import { ConfigReader, type Json } from './hf_config.js';

export function gemma(raw: Json, file: string): DecoderConfig {
  const c = baseConfig({ ...raw, sliding_window: null, tie_word_embeddings: raw.tie_word_embeddings ?? true }, file);
  return { ...c, normOffset: 1, scaleEmbeddings: true };
}

export function gemma2(raw: Json, file: string): DecoderConfig {
  const r = new ConfigReader(raw, file);
  const c = gemma({ ...raw }, file);
  const window = r.has('sliding_window') ? r.int('sliding_window') : 4096;
  return {
    ...c,
    // layer i is sliding when i is even (Gemma2DecoderLayer.is_sliding = not layer_idx % 2)
    slidingWindows: Array.from({ length: c.numLayers }, (_, i) => (i % 2 === 0 ? window : 0)),
    attentionScale: r.positive('query_pre_attn_scalar', c.headDim) ** -0.5,
    // tanh(x / cap) * cap: a cap of 0 divides by zero; null (absent) turns capping off
    attnSoftcap: r.has('attn_logit_softcapping') ? r.positive('attn_logit_softcapping') : 0,
    finalSoftcap: r.has('final_logit_softcapping') ? r.positive('final_logit_softcapping') : 0,
    sandwichNorms: true,
  };
}
