// Checkpoints for the lazy-loading tests (lazy_load.test.ts and its RSS child): one random Llama
// (hidden 512, 2 layers, vocab 32000, tied embeddings: 22.0M parameters, 88 MB in float32) saved
// as float32, as bfloat16 and as bitsandbytes NF4 (bf16 embeddings and norms, as transformers saves
// a load_in_4bit model), large enough that a whole-model copy stands far above 1.1x its size.
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as k from '../../src/index.js';
import { decoderConfig } from '../../src/models/registry.js';

export const LAZY_CONFIG = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 32000, hidden_size: 512, intermediate_size: 1408,
  num_hidden_layers: 2, num_attention_heads: 8, num_key_value_heads: 2, max_position_embeddings: 256, rms_norm_eps: 1e-5,
  rope_theta: 10000, hidden_act: 'silu', tie_word_embeddings: true, initializer_range: 0.02, torch_dtype: 'float32',
};

export type LazyFolder = 'f32' | 'bf16' | 'nf4';

/** A freshly built (seeded) model of LAZY_CONFIG, as saved in `kind`'s folder. */
export function lazySource(kind: LazyFolder): k.CausalLM {
  const m = new k.CausalLM(decoderConfig(LAZY_CONFIG, 'lazy_fixture'), { generator: new k.Generator(11) });
  if (kind === 'nf4') k.quant.quantizeModel(m, { type: 'nf4' });
  if (kind !== 'f32') m.to('bfloat16');
  return m;
}

/** Writes the three folders under a new temp dir (or reuses `root`); returns their paths and the models saved (the caller frees them). */
export function writeLazyFixtures(root = mkdtempSync(join(tmpdir(), 'kestrel-lazy-'))): { dirs: Record<LazyFolder, string>; saved: Record<LazyFolder, k.CausalLM> } {
  const dirs = { f32: join(root, 'f32'), bf16: join(root, 'bf16'), nf4: join(root, 'nf4') };
  const saved = { f32: lazySource('f32'), bf16: lazySource('bf16'), nf4: lazySource('nf4') };
  for (const kind of ['f32', 'bf16', 'nf4'] as const)
    if (!existsSync(join(dirs[kind], 'config.json')))
      k.savePretrained(dirs[kind], { model: saved[kind], hfConfig: { ...LAZY_CONFIG, torch_dtype: kind === 'f32' ? 'float32' : 'bfloat16' } });
  return { dirs, saved };
}
