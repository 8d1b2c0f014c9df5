// Text-to-speech fine-tuning of a causal LM over codec tokens: the manifest's audio encoded once
// (cached), the vocabulary grown by the audio tokens unless the model already has them (a run's
// folder trained further), LoRA adapters plus the trainable embedding and head (or full
// fine-tuning), the usual Trainer, and a merged HF folder that loads back.
import { join } from 'node:path';
import { PaddedDataset } from '../data/dataset.js';
import { DocView, TokenStoreBuilder } from '../data/token_store.js';
import type { Json } from '../io/hf_folder.js';
import { type LoraConfig, injectLora, mergeLora } from '../lora/peft.js';
import { CausalLM } from '../models/causal_lm.js';
import type { EncodecModel } from '../models/encodec.js';
import { savePretrained } from '../models/load.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { Trainer, type StepMetrics } from './trainer.js';
import { encodeAudioCached, ttsRow } from './tts_data.js';
import { extendedVocab } from './tts_layout.js';
import { type TtsMeta, growVocab, readTtsMeta, ttsMetaJson } from './tts_model.js';

export interface TtsRecord {
  text: string;
  audio: string;
  where: string;
}

export interface TtsTrainOptions {
  output: string;
  bandwidth: number;
  steps: number;
  lr: number;
  batchSize: number;
  /** null: full fine-tuning */
  lora: LoraConfig | null;
  seed?: number;
  progress?: boolean;
  onStep?: (m: StepMetrics) => void;
}

/** The layout a run uses: the folder's own (training further) or a new one after the text vocabulary. */
export function ttsLayoutFor(lm: CausalLM, hfConfig: Json, codec: EncodecModel, bandwidth: number, file: string): TtsMeta {
  const have = readTtsMeta(hfConfig, file);
  const meta: TtsMeta = have ?? { offset: lm.config.vocabSize, codebooks: codec.codebooks(bandwidth), codebookSize: codec.config.codebookSize, bandwidth, samplingRate: codec.config.samplingRate };
  if (have && (have.codebooks !== codec.codebooks(bandwidth) || have.codebookSize !== codec.config.codebookSize || have.samplingRate !== codec.config.samplingRate))
    throw new Error(`${file}: kestrel_tts (${have.codebooks} codebooks of ${have.codebookSize} at ${have.samplingRate} Hz) does not match this codec at ${bandwidth} kbps (${codec.codebooks(bandwidth)} of ${codec.config.codebookSize} at ${codec.config.samplingRate} Hz)`);
  return meta;
}

/**
 * Trains `lm` to continue each text with its audio's codes; returns the trained (merged) LM and
 * its config.json, also written to o.output with the tokenizer files copied by the caller.
 * @example await trainTts(lm, hfConfig, tokenizer, codec, records, { output: 'run', bandwidth: 1.5, steps: 200, lr: 2e-3, batchSize: 4, lora: null })
 */
export async function trainTts(lm: CausalLM, hfConfig: Json, tokenizer: Tokenizer, codec: EncodecModel, records: readonly TtsRecord[], o: TtsTrainOptions): Promise<{ model: CausalLM; hfConfig: Json; meta: TtsMeta; losses: number[] }> {
  const meta = ttsLayoutFor(lm, hfConfig, codec, o.bandwidth, 'config.json');
  const cacheDir = join(o.output, 'codec_cache');
  const store = new TokenStoreBuilder();
  let longest = 0;
  for (const r of records) {
    const row = ttsRow(tokenizer, r.text, encodeAudioCached(codec, r.audio, { bandwidth: o.bandwidth, cacheDir }), meta);
    store.addArrays(row.ids, row.labels);
    longest = Math.max(longest, row.ids.length);
  }
  if (longest > lm.config.maxPositionEmbeddings)
    throw new Error(`tts: a row of ${longest} tokens (text + ${meta.codebooks} codebooks x frames) exceeds the model's max_position_embeddings ${lm.config.maxPositionEmbeddings}; use shorter clips or a lower bandwidth`);
  const grown = lm.config.vocabSize < extendedVocab(meta) ? growVocab(lm, hfConfig, extendedVocab(meta), o.seed ?? 0) : { model: lm, hfConfig };
  const model = grown.model;
  if (o.lora) {
    injectLora(model, o.lora);
    // the audio ids' rows must learn: the embedding and head train whole, in place (with a tied head
    // that is one tensor), so merging leaves a plain folder
    model.model.embed_tokens.weight.requiresGrad = true;
    if (model.lm_head) model.lm_head.weight.requiresGrad = true;
  }
  const built = store.build();
  const data = new PaddedDataset(new DocView(built, Int32Array.from(records, (_, i) => i)), longest, 0, o.seed ?? 0);
  const losses: number[] = [];
  const trainer = new Trainer({
    model, data, lr: o.lr, batchSize: o.batchSize, maxSteps: o.steps, outputDir: o.output, progress: o.progress ?? false,
    onStep: (m) => (losses.push(m.loss), o.onStep?.(m)),
  });
  await trainer.train();
  if (o.lora) mergeLora(model);
  const config = { ...grown.hfConfig, kestrel_tts: ttsMetaJson(meta) };
  savePretrained(o.output, { model, hfConfig: config });
  return { model, hfConfig: config, meta, losses };
}
