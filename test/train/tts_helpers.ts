// Shared setup of the text-to-speech tests: espeak-ng speech of a few words in two voices, a
// manifest of them, and a tiny random Llama whose tokenizer is the tiny Whisper fixture's
// byte-level BPE (1015 ids), saved as an HF folder.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as k from '../../src/index.js';
import { espeakToWav } from '../../src/audio/espeak.js';
import { savePretrained } from '../../src/models/load.js';
import { decoderConfig } from '../../src/models/registry.js';

export const WORDS: [string, string][] = [['yes', 'en'], ['stop', 'en+f3'], ['hello', 'en']];

export const TINY_TTS_LM = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 1015, hidden_size: 64, intermediate_size: 128,
  num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 4, max_position_embeddings: 512, rms_norm_eps: 1e-5,
  rope_theta: 10000, hidden_act: 'silu', tie_word_embeddings: false, bos_token_id: 1000, eos_token_id: 1000,
  initializer_range: 0.02, torch_dtype: 'float32',
};

/** espeak-ng clips of WORDS in dir and a manifest.jsonl of {text, audio} (relative paths). */
export function makeSpeech(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const lines = WORDS.map(([text, voice], i) => {
    espeakToWav(text, join(dir, `w${i}.wav`), { voice });
    return JSON.stringify({ text, audio: `w${i}.wav` });
  });
  const manifest = join(dir, 'manifest.jsonl');
  writeFileSync(manifest, lines.join('\n') + '\n');
  return manifest;
}

/** The tiny LM folder (random weights, seed 1; head tied to the embedding when asked) with the tiny Whisper's tokenizer files. */
export function makeTinyLm(dir: string, whisperDir: string, o: { tied?: boolean } = {}): string {
  mkdirSync(dir, { recursive: true });
  const config = { ...TINY_TTS_LM, tie_word_embeddings: o.tied ?? false };
  const model = new k.CausalLM(decoderConfig(config, 'tiny tts lm'), { generator: new k.Generator(1) });
  savePretrained(dir, { model, hfConfig: config });
  model.dispose();
  for (const f of ['vocab.json', 'merges.txt', 'added_tokens.json', 'special_tokens_map.json', 'tokenizer_config.json']) copyFileSync(join(whisperDir, f), join(dir, f));
  return dir;
}
