// The causal LM of a text-to-speech run: its vocabulary extended by the audio tokens (the
// embedding and head grown, old rows kept, new rows initialised as the model initialises them),
// and the layout (text vocabulary, codebooks, codebook size, bandwidth, codec rate) recorded in
// config.json under "kestrel_tts", so the saved folder loads back as a plain LM for more training
// and `kestrel speak` knows how to read its tokens. Llama-family (decoder.ts) models only.
import type { Json } from '../io/hf_folder.js';
import { cat } from '../ops/indexing.js';
import { narrow } from '../ops/view.js';
import { assignValues } from '../nn/module.js';
import { tidy } from '../tensor/scope.js';
import { Generator } from '../tensor/rng.js';
import { CausalLM } from '../models/causal_lm.js';
import { decoderConfig } from '../models/registry.js';
import type { TtsLayout } from './tts_layout.js';

/** the tensors with one row per token */
const VOCAB_ROWS = /(^|\.)embed_tokens\.weight$|^lm_head\.weight$/;

export interface TtsMeta extends TtsLayout {
  /** kbps the codes were made at */
  bandwidth: number;
  samplingRate: number;
}

/** The run's layout from a config.json, or null when it has none (a plain LM). */
export function readTtsMeta(hfConfig: Json, file: string): TtsMeta | null {
  const m = hfConfig.kestrel_tts as Record<string, unknown> | undefined;
  if (m === undefined) return null;
  const fields = ['offset', 'codebooks', 'codebook_size', 'bandwidth', 'sampling_rate'];
  for (const f of fields) if (typeof m?.[f] !== 'number' || !((m[f] as number) > 0 || (f === 'offset' && m[f] === 0)))
    throw new Error(`${file}: kestrel_tts.${f} must be a positive number, got ${JSON.stringify(m?.[f])}`);
  return { offset: m.offset as number, codebooks: m.codebooks as number, codebookSize: m.codebook_size as number, bandwidth: m.bandwidth as number, samplingRate: m.sampling_rate as number };
}

export const ttsMetaJson = (m: TtsMeta): Json => ({ offset: m.offset, codebooks: m.codebooks, codebook_size: m.codebookSize, bandwidth: m.bandwidth, sampling_rate: m.samplingRate });

/**
 * A copy of `model` with `vocab` rows in embed_tokens and lm_head (the first rows are the old
 * ones), and the config.json that describes it. Disposes the old model.
 * @example const grown = growVocab(model, hfConfig, 1273, 0)
 */
export function growVocab(model: CausalLM, hfConfig: Json, vocab: number, seed: number): { model: CausalLM; hfConfig: Json } {
  const old = model.config.vocabSize;
  if (vocab < old) throw new Error(`growVocab: the new vocabulary (${vocab}) is smaller than the model's (${old})`);
  const config = { ...hfConfig, vocab_size: vocab };
  const grown = new CausalLM(decoderConfig(config, 'config.json (vocabulary grown for audio tokens)'), { generator: new Generator(seed) });
  const fresh = grown.stateDict();
  tidy(() => {
    for (const [name, t] of Object.entries(model.stateDict())) {
      const dst = fresh[name];
      if (!dst) throw new Error(`growVocab: '${name}' has no counterpart in the grown model`);
      // the vocabulary rows: old rows first, the grown model's own initialisation for the rest
      const src = VOCAB_ROWS.test(name) && vocab !== old ? cat([t, narrow(dst, 0, old, vocab - old)], 0) : t;
      assignValues(dst, src);
    }
  });
  model.dispose();
  return { model: grown, hfConfig: config };
}
