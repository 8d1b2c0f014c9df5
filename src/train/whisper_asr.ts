// Fine-tuning Whisper for speech recognition: examples (audio -> 80/128-bin log-mel features,
// transcript -> labels as transformers' Whisper recipe builds them: <|lang|> <|task|>
// <|notimestamps|> text <|endoftext|>, the model prepending <|startoftranscript|>), optional
// SpecAugment-style masking of the features (HF's mask_time / mask_feature: spans set to zero),
// AdamW steps over padded batches (-100 past each label sequence), and WER / CER of greedy
// transcriptions on an evaluation split.
import { stack } from '../ops/indexing.js';
import { tensor } from '../ops/creation.js';
import { reshape } from '../ops/view.js';
import { keep, tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { loadAudio } from '../audio/load.js';
import { whisperLogMel } from '../audio/whisper_features.js';
import type { AsrSample } from '../data/asr_parquet.js';
import { SeededRandom, permutation } from '../data/shuffle.js';
import type { WhisperForConditionalGeneration } from '../models/whisper.js';
import { type WhisperGenerationConfig, whisperGenerate } from '../models/whisper_generate.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { AdamW } from '../optim/adamw.js';
import { charErrorRate, wordErrorRate } from './asr_metrics.js';

export interface AsrPrompt {
  /** language code, e.g. 'en' */
  language: string;
  task: 'transcribe' | 'translate';
}

/** Labels for a transcript: <|lang|> <|task|> <|notimestamps|> tokens(' ' + text) <|endoftext|>. */
export function asrLabels(tokenizer: Tokenizer, g: WhisperGenerationConfig, text: string, p: AsrPrompt): number[] {
  const lang = g.langToId[`<|${p.language}|>`];
  const task = g.taskToId[p.task];
  if (lang === undefined) throw new Error(`asrLabels: language '${p.language}' is not in lang_to_id (${Object.keys(g.langToId).join(', ')})`);
  if (task === undefined) throw new Error(`asrLabels: task '${p.task}' is not in task_to_id`);
  const prefix = g.noTimestampsTokenId === null ? [lang, task] : [lang, task, g.noTimestampsTokenId];
  return [...prefix, ...tokenizer.encode(` ${text.trim()}`, { addSpecialTokens: false }), g.eosTokenId];
}

export interface AsrExample {
  /** log-mel features [n_mels, 3000] (kept: dispose with disposeExamples) */
  features: Tensor;
  labels: number[];
  text: string;
  where: string;
}

/** Decodes, resamples to 16 kHz mono and featurises each record once. */
export function prepareAsrExamples(records: readonly AsrSample[], model: WhisperForConditionalGeneration, tokenizer: Tokenizer, g: WhisperGenerationConfig, p: AsrPrompt): AsrExample[] {
  return records.map((r) => {
    const features = keep(tidy(() => whisperLogMel(reshape(loadAudio(r.audio, { sampleRate: 16000, mono: true }).samples, [-1]), { nMels: model.config.numMelBins })));
    const labels = asrLabels(tokenizer, g, r.text, p);
    if (labels.length > model.config.maxTargetPositions)
      throw new Error(`${r.where}: ${labels.length} label tokens exceed max_target_positions ${model.config.maxTargetPositions}`);
    return { features, labels, text: r.text, where: r.where };
  });
}

export const disposeExamples = (xs: readonly AsrExample[]): void => xs.forEach((x) => x.features.dispose());

export interface SpecAugmentOptions {
  /** masks along time and their widest span in frames (defaults 2 and 10, as HF's mask_time_*) */
  timeMasks?: number;
  timeWidth?: number;
  /** masks along the mel axis and their widest span (defaults 0 and 10) */
  freqMasks?: number;
  freqWidth?: number;
}

/** A copy of features [n_mels, frames] with random time and frequency spans set to zero. */
export function specAugment(features: Float32Array, nMels: number, o: SpecAugmentOptions, rng: () => number): Float32Array {
  const frames = features.length / nMels;
  const out = features.slice();
  const span = (len: number, width: number): [number, number] => {
    const w = Math.floor(rng() * (width + 1));
    const start = Math.floor(rng() * Math.max(1, len - w));
    return [start, Math.min(len, start + w)];
  };
  for (let m = 0; m < (o.timeMasks ?? 2); m++) {
    const [a, b] = span(frames, o.timeWidth ?? 10);
    for (let f = 0; f < nMels; f++) out.fill(0, f * frames + a, f * frames + b);
  }
  for (let m = 0; m < (o.freqMasks ?? 0); m++) {
    const [a, b] = span(nMels, o.freqWidth ?? 10);
    out.fill(0, a * frames, b * frames);
  }
  return out;
}

export interface AsrTrainOptions {
  steps: number;
  lr: number;
  batchSize: number;
  /** masking of the training features (none by default) */
  specAugment?: SpecAugmentOptions | null;
  seed?: number;
  /** called after every step with its loss */
  onStep?: (step: number, loss: number) => void;
}

/** One padded batch: features [B, n_mels, frames], labels [B, T] int64 with -100 after each sequence. */
function batchOf(xs: readonly AsrExample[], augment: ((f: Float32Array) => Float32Array) | null): { features: Tensor; labels: Tensor } {
  const T = Math.max(...xs.map((x) => x.labels.length));
  const labels = BigInt64Array.from({ length: xs.length * T }, (_, i) => BigInt(xs[Math.floor(i / T)].labels[i % T] ?? -100));
  const backend = xs[0].features.backendName;
  const features = augment
    ? stack(xs.map((x) => tensor(augment(x.features.toFloat32Array()), { shape: [...x.features.shape], backend })))
    : stack(xs.map((x) => x.features));
  return { features, labels: tensor(labels, { shape: [xs.length, T], backend }) };
}

/**
 * AdamW steps over the examples in a seeded shuffled order (the trainable parameters: all, or the
 * LoRA adapters after injectLora). Returns each step's loss.
 * @example trainAsr(model, examples, { steps: 100, lr: 1e-4, batchSize: 8 })
 */
export function trainAsr(model: WhisperForConditionalGeneration, examples: readonly AsrExample[], o: AsrTrainOptions): number[] {
  const params = model.parameters().filter((p) => p.requiresGrad);
  const opt = new AdamW(params, { lr: o.lr, weightDecay: 0 });
  const random = new SeededRandom(o.seed ?? 0);
  const rng = (): number => random.nextU32() / 4294967296;
  const nMels = model.config.numMelBins;
  const augment = o.specAugment ? (f: Float32Array): Float32Array => specAugment(f, nMels, o.specAugment!, rng) : null;
  let order: number[] = [];
  const losses: number[] = [];
  model.train();
  for (let step = 1; step <= o.steps; step++) {
    if (order.length < o.batchSize) order = [...order, ...permutation(examples.length, random)];
    const picked = order.splice(0, Math.min(o.batchSize, examples.length)).map((i) => examples[i]);
    const loss = tidy(() => {
      const b = batchOf(picked, augment);
      const l = model.forward({ inputFeatures: b.features, labels: b.labels }).loss!;
      l.backward();
      return l.item();
    });
    opt.step();
    opt.zeroGrad();
    losses.push(loss);
    o.onStep?.(step, loss);
  }
  model.eval();
  return losses;
}

/** WER and CER of greedy transcriptions (prompted with p) against the examples' texts. */
export function evaluateAsr(model: WhisperForConditionalGeneration, tokenizer: Tokenizer, g: WhisperGenerationConfig, examples: readonly AsrExample[], p: AsrPrompt): { wer: number; cer: number; hypotheses: string[] } {
  const maxNewTokens = Math.max(...examples.map((x) => x.labels.length)) + 8;
  const hypotheses = examples.map((x) => {
    const features = reshape(x.features, [1, ...x.features.shape]);
    const ids = whisperGenerate(model, features, g, { language: p.language, task: p.task, maxNewTokens }).tokens.filter((id) => id !== g.eosTokenId);
    features.dispose();
    return tokenizer.decode(ids, { skipSpecialTokens: true });
  });
  const refs = examples.map((x) => x.text);
  return { wer: wordErrorRate(refs, hypotheses), cer: charErrorRate(refs, hypotheses), hypotheses };
}
