// Phi-3: fused qkv_proj (rows q, k, v) and gate_up_proj (rows gate, up); LongRoPE scaling.
import type { DecoderConfig } from '../config.js';
import { baseConfig } from './llama.js';
import type { Json } from './hf_config.js';

export function phi3(raw: Json, file: string): DecoderConfig {
  const c = baseConfig({ ...raw, sliding_window: null }, file);
  return { ...c, fusedQkv: true, fusedGateUp: true, qkvBias: false, oBias: false };
}
