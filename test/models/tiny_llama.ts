// A tiny random Llama saved as an HF folder, and raw access to a safetensors file's header, for the
// loader tests (load_checks, load_fuzz): 2 layers, hidden 16, 4 heads of 4, 2 kv heads, vocab 64.
import { mkdirSync } from 'node:fs';
import * as k from '../../src/index.js';
import { savePretrained } from '../../src/models/load.js';
import { decoderConfig } from '../../src/models/registry.js';

export const TINY = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 64, hidden_size: 16, intermediate_size: 32,
  num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, rms_norm_eps: 1e-5,
  rope_theta: 10000, hidden_act: 'silu', tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2,
  initializer_range: 0.02, torch_dtype: 'float32',
};

/** Saves a seeded random TINY into dir (config.json, model.safetensors) and returns the model. */
export function saveTiny(dir: string, seed = 1): k.CausalLM {
  mkdirSync(dir, { recursive: true });
  const model = new k.CausalLM(decoderConfig(TINY, 'tiny config'), { generator: new k.Generator(seed) });
  savePretrained(dir, { model, hfConfig: TINY });
  return model;
}

/** A safetensors file's JSON header text and data section. */
export function splitSafetensors(buf: Buffer): { json: string; data: Buffer } {
  const n = Number(buf.readBigUInt64LE(0));
  return { json: buf.subarray(8, 8 + n).toString('utf8'), data: buf.subarray(8 + n) };
}

/** The file with this header text (its length prefixed) and data section. */
export function joinSafetensors(json: string, data: Buffer): Buffer {
  const text = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(text.length));
  return Buffer.concat([len, text, data]);
}
