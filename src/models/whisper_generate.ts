// Greedy Whisper decoding as transformers' WhisperGenerationMixin (4.44, short form, one
// utterance): the prompt <|startoftranscript|> <|lang|> <|task|> <|notimestamps|> (language and
// task arguments override generation_config.forced_decoder_ids; with neither, the language is
// detected from the first step's logits over the language tokens), generation_config's
// suppress_tokens at every step and begin_suppress_tokens at the first generated one, stopping at
// <|endoftext|> or maxNewTokens. With timestamps the prompt ends at the task and the timestamp
// rules (whisper_timestamps.ts) follow the suppression at each step. The encoder runs once and the cross-attention keys/values are
// computed once (WhisperDecoderCache); each step feeds one token.
import { tensor } from '../ops/creation.js';
import { narrow } from '../ops/view.js';
import { toFloat32Array } from '../ops/transfer.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { checkNumber } from '../io/check.js';
import type { Json } from './families/hf_config.js';
import type { WhisperDecoderCache, WhisperForConditionalGeneration } from './whisper.js';
import { type TimestampRules, applyTimestampRules } from './whisper_timestamps.js';

export interface WhisperGenerationConfig {
  decoderStartTokenId: number;
  eosTokenId: number;
  suppressTokens: number[];
  beginSuppressTokens: number[];
  /** [position, id] pairs fixed by the checkpoint (position 1 language, 2 task, 3 notimestamps) */
  forcedDecoderIds: [number, number][];
  langToId: Record<string, number>;
  taskToId: Record<string, number>;
  noTimestampsTokenId: number | null;
  /** with timestamps, the latest first timestamp as an index from <|0.00|> (null: any) */
  maxInitialTimestampIndex: number | null;
  maxLength: number;
}

const ids = (v: unknown): number[] => (Array.isArray(v) ? v.filter((x): x is number => Number.isInteger(x)) : Number.isInteger(v) ? [v as number] : []);

/** Reads generation_config.json's Whisper fields (file names the file in errors). */
export function whisperGenerationConfig(raw: Json, file: string): WhisperGenerationConfig {
  const start = ids(raw.decoder_start_token_id)[0];
  const eos = ids(raw.eos_token_id)[0];
  if (start === undefined || eos === undefined) throw new Error(`${file}: decoder_start_token_id and eos_token_id are required for Whisper generation`);
  const forced = Array.isArray(raw.forced_decoder_ids) ? (raw.forced_decoder_ids as unknown[]).filter((p): p is [number, number] =>
    Array.isArray(p) && p.length === 2 && Number.isInteger(p[0]) && Number.isInteger(p[1])) : [];
  return {
    decoderStartTokenId: start, eosTokenId: eos, suppressTokens: ids(raw.suppress_tokens), beginSuppressTokens: ids(raw.begin_suppress_tokens),
    forcedDecoderIds: forced, langToId: (raw.lang_to_id ?? {}) as Record<string, number>, taskToId: (raw.task_to_id ?? {}) as Record<string, number>,
    noTimestampsTokenId: ids(raw.no_timestamps_token_id)[0] ?? null, maxInitialTimestampIndex: ids(raw.max_initial_timestamp_index)[0] ?? null,
    maxLength: ids(raw.max_length)[0] ?? 448,
  };
}

export interface WhisperGenerateOptions {
  /** a language code ('fr') or token ('<|fr|>'); default: forced_decoder_ids, else detected */
  language?: string;
  /** default: forced_decoder_ids' task, else 'transcribe' */
  task?: 'transcribe' | 'translate';
  /** default: up to generation_config.max_length */
  maxNewTokens?: number;
  /** keep each step's processed logits (the scores transformers returns with output_scores) */
  returnScores?: boolean;
  /** generate timestamp tokens (return_timestamps): no <|notimestamps|> in the prompt, the timestamp rules at every step */
  timestamps?: boolean;
}

export interface WhisperGeneration {
  /** the prompt and the generated ids (as transformers returns them) */
  sequence: number[];
  /** the generated ids after the prompt */
  tokens: number[];
  promptLength: number;
  /** per generated step, the logits after suppression (-Infinity at suppressed ids) */
  scores: Float32Array[];
}

function languageId(g: WhisperGenerationConfig, language: string): number {
  const token = language.startsWith('<|') ? language : `<|${language.toLowerCase()}|>`;
  const id = g.langToId[token];
  if (id === undefined) throw new Error(`whisper generate: language '${language}' is not in this model's lang_to_id (${Object.keys(g.langToId).join(', ')})`);
  return id;
}

/** The row of logits [V] after the suppression processors (the step's index counts generated tokens). */
function processed(logits: Float32Array, g: WhisperGenerationConfig, step: number): Float32Array {
  for (const id of g.suppressTokens) if (id < logits.length) logits[id] = -Infinity;
  if (step === 0) for (const id of g.beginSuppressTokens) if (id < logits.length) logits[id] = -Infinity;
  return logits;
}

/** The timestamp rules' ids; a model without timestamp tokens is refused by name. */
export function timestampRules(g: WhisperGenerationConfig, vocabSize: number): TimestampRules {
  if (g.noTimestampsTokenId === null || g.noTimestampsTokenId + 1 >= vocabSize)
    throw new Error(`whisper generate: timestamps need timestamp tokens after no_timestamps_token_id (${g.noTimestampsTokenId}), but the vocabulary ends at ${vocabSize - 1}`);
  return { timestampBegin: g.noTimestampsTokenId + 1, noTimestampsTokenId: g.noTimestampsTokenId, eosTokenId: g.eosTokenId, maxInitialTimestampIndex: g.maxInitialTimestampIndex };
}

const argmaxOf = (v: Float32Array): number => v.reduce((best, x, i) => (x > v[best] ? i : best), 0);

/** The last position's logits of the next step for `next` ids fed to the cache. */
function stepLogits(model: WhisperForConditionalGeneration, cache: WhisperDecoderCache, next: number[], backend: string): Float32Array {
  return tidy(() => {
    const logits = model.decodeStep(tensor(BigInt64Array.from(next, BigInt), { shape: [1, next.length], backend }), cache);
    return toFloat32Array(narrow(logits, 1, next.length - 1, 1));
  });
}

/** <|lang|> of the most likely language after <|startoftranscript|> (a fresh cache; HF's detect_language). */
function detectLanguage(model: WhisperForConditionalGeneration, encoderOut: Tensor, g: WhisperGenerationConfig): number {
  const langIds = Object.values(g.langToId);
  if (!langIds.length) throw new Error('whisper generate: no language given and generation_config has no lang_to_id to detect one from');
  const cache = model.decoderCache(encoderOut, 1);
  try {
    const logits = stepLogits(model, cache, [g.decoderStartTokenId], encoderOut.backendName);
    return langIds.reduce((best, id) => (logits[id] > logits[best] ? id : best), langIds[0]);
  } finally {
    model.disposeDecoderCache(cache);
  }
}

/**
 * Greedy transcription of one utterance's log-mel features [1, n_mels, 3000].
 * @example whisperGenerate(model, feats, genConfig, { language: 'en', maxNewTokens: 64 }).tokens
 */
export function whisperGenerate(model: WhisperForConditionalGeneration, features: Tensor, g: WhisperGenerationConfig, opts: WhisperGenerateOptions = {}): WhisperGeneration {
  return noGrad(() => greedy(model, features, g, opts));
}

function greedy(model: WhisperForConditionalGeneration, features: Tensor, g: WhisperGenerationConfig, opts: WhisperGenerateOptions): WhisperGeneration {
  if (features.ndim !== 3 || features.shape[0] !== 1) throw new Error(`whisper generate: features must be one utterance [1, n_mels, frames], got [${features.shape.join(', ')}]`);
  const encoderOut = model.encode(features);
  const forced = new Map(g.forcedDecoderIds);
  try {
    const lang = opts.language !== undefined ? languageId(g, opts.language) : forced.get(1) ?? detectLanguage(model, encoderOut, g);
    const task = opts.task !== undefined ? g.taskToId[opts.task] : forced.get(2) ?? g.taskToId.transcribe;
    if (task === undefined) throw new Error(`whisper generate: task '${opts.task}' is not in this model's task_to_id`);
    const rules = opts.timestamps ? timestampRules(g, model.config.vocabSize) : null;
    const prompt = [g.decoderStartTokenId, lang, task, ...(g.noTimestampsTokenId !== null && !rules ? [g.noTimestampsTokenId] : [])];
    const limit = Math.min(g.maxLength, model.config.maxTargetPositions);
    const maxNew = checkNumber(opts.maxNewTokens ?? limit - prompt.length, { int: true, min: 0, max: limit - prompt.length }, 'whisper generate maxNewTokens');
    const cache = model.decoderCache(encoderOut, prompt.length + maxNew);
    const sequence = [...prompt];
    const scores: Float32Array[] = [];
    try {
      let next = prompt;
      for (let step = 0; step < maxNew; step++) {
        const logits = processed(stepLogits(model, cache, next, encoderOut.backendName), g, step);
        if (rules) applyTimestampRules(logits, sequence.slice(prompt.length), rules);
        if (opts.returnScores) scores.push(logits);
        const id = argmaxOf(logits);
        sequence.push(id);
        if (id === g.eosTokenId) break;
        next = [id];
      }
    } finally {
      model.disposeDecoderCache(cache);
    }
    return { sequence, tokens: sequence.slice(prompt.length), promptLength: prompt.length, scores };
  } finally {
    encoderOut.dispose();
  }
}
