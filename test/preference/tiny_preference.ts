// A tiny byte-tokenizer Llama and a synthetic preference task for the training tests: prompts of
// random letters, chosen completions spelled with vowels, rejected ones with consonants. A model
// that learns "vowels are preferred" ranks held-out pairs it has never seen.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k from '../../src/index.js';
import { writeByteTokenizer } from '../../src/demo/byte_tokenizer.js';
import { decoderConfig } from '../../src/models/registry.js';
import { injectLora } from '../../src/lora/peft.js';
import { quantizeModel } from '../../src/quant/quantize_model.js';
import { seeded } from '../helpers.js';

/** vocab 259 = 256 bytes + <|endoftext|> (pad, 256), <|im_start|>, <|im_end|> (eos, 258) */
export const TINY_PREF = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 259, hidden_size: 32, intermediate_size: 64,
  num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64, rms_norm_eps: 1e-5,
  rope_theta: 10000, hidden_act: 'silu', tie_word_embeddings: false, pad_token_id: 256, eos_token_id: 258, initializer_range: 0.05, torch_dtype: 'float32',
};
export const PAD = 256;

export function tinyPolicy(seed = 1): k.CausalLM {
  return new k.CausalLM(decoderConfig(TINY_PREF, 'tiny preference config'), { generator: new k.Generator(seed) });
}

/** n records {prompt, chosen, rejected} of the vowel task, deterministic in seed. */
export function vowelPairs(n: number, seed: number): { prompt: string; chosen: string; rejected: string }[] {
  const r = seeded(n * 16, seed, 0, 1);
  let i = 0;
  const word = (alphabet: string, len: number): string => Array.from({ length: len }, () => alphabet[Math.floor(r[i++] * alphabet.length)]).join('');
  return Array.from({ length: n }, () => ({ prompt: `${word('qwrtzpsdfg', 3)}:`, chosen: ` ${word('aeiou', 4)}`, rejected: ` ${word('bcdfghjklmnp', 4)}` }));
}

/** A temp folder with the byte tokenizer, config.json, pairs.jsonl (n pairs) and kto.jsonl (the same, unpaired). */
export function tinyPreferenceDir(n: number, seed = 7): string {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-pref-'));
  writeByteTokenizer(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(TINY_PREF));
  const pairs = vowelPairs(n, seed);
  writeFileSync(join(dir, 'pairs.jsonl'), pairs.map((p) => JSON.stringify(p)).join('\n') + '\n');
  // KTO's unpaired form of the same task: each pair's completions as a desirable and an undesirable record
  const unpaired = pairs.flatMap((p) => [{ prompt: p.prompt, completion: p.chosen, label: true }, { prompt: p.prompt, completion: p.rejected, label: false }]);
  writeFileSync(join(dir, 'kto.jsonl'), unpaired.map((p) => JSON.stringify(p)).join('\n') + '\n');
  return dir;
}

export const LORA = { r: 8, alpha: 16, targetModules: 'all-linear' as const };

/** LoRA on a float32 base, or QLoRA: the base's Linears quantized to NF4 first (lm_head and `skip` stay float). */
export type Adapter = 'LoRA' | 'QLoRA';
export const ADAPTERS: Adapter[] = ['LoRA', 'QLoRA'];
export function addAdapters(model: k.nn.Module, adapter: Adapter, opts: { skip?: string[]; modulesToSave?: string[] } = {}): void {
  if (adapter === 'QLoRA') assert.ok(quantizeModel(model, { type: 'nf4', skip: opts.skip }).length > 0, 'QLoRA: some Linears quantized');
  injectLora(model, { ...LORA, modulesToSave: opts.modulesToSave });
}
