// Text-to-speech training data: each manifest record's audio encoded once by the codec (cached on
// disk by the file's content hash and the codec's config and bandwidth, so a rerun or a second run
// in the same folder skips the encoder), then one token row per record: the text, start-of-audio,
// the codes interleaved frame-major (tts_layout.ts), end-of-audio; loss only on the audio part.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadAudio } from '../audio/load.js';
import { toTypedArray } from '../ops/transfer.js';
import { tidy } from '../tensor/scope.js';
import type { EncodecModel } from '../models/encodec.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { type TtsLayout, codesToTokens, endOfAudio, startOfAudio } from './tts_layout.js';

export interface EncodedAudio {
  /** codes [codebooks * frames], codebook-major */
  codes: number[];
  frames: number;
}

/**
 * The codes of one audio file at `bandwidth`, from `cacheDir` when this file (by content) was
 * encoded before with the same codec config and bandwidth.
 * @example encodeAudioCached(codec, 'a.wav', { bandwidth: 1.5, cacheDir: 'run/codec_cache' })
 */
export function encodeAudioCached(codec: EncodecModel, path: string, o: { bandwidth: number; cacheDir: string }): EncodedAudio {
  const key = createHash('sha256').update(readFileSync(path)).update(JSON.stringify({ config: codec.config, bandwidth: o.bandwidth })).digest('hex');
  const file = join(o.cacheDir, `${key}.json`);
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as EncodedAudio;
  const encoded = tidy(() => {
    const { samples } = loadAudio(path, { sampleRate: codec.config.samplingRate, mono: codec.config.audioChannels === 1 });
    const codes = codec.encode(samples, { bandwidth: o.bandwidth });
    return { codes: Array.from(toTypedArray(codes) as ArrayLike<number | bigint>, Number), frames: codes.shape[1] };
  });
  mkdirSync(o.cacheDir, { recursive: true });
  writeFileSync(`${file}.tmp`, JSON.stringify(encoded));
  renameSync(`${file}.tmp`, file); // a killed run never leaves a half-written entry
  return encoded;
}

/** The prompt for a text: its tokens then start-of-audio (what speak feeds the LM). */
export function ttsPrompt(tokenizer: Tokenizer, text: string, l: TtsLayout): number[] {
  const ids = tokenizer.encode(text.trim());
  if (ids.some((id) => id >= l.offset)) throw new Error(`tts: the tokenizer gave ids >= the text vocabulary ${l.offset} for ${JSON.stringify(text)}`);
  return [...ids, startOfAudio(l)];
}

/** One training row: prompt, audio tokens, end-of-audio; labels -100 over the prompt (loss on the audio only). */
export function ttsRow(tokenizer: Tokenizer, text: string, audio: EncodedAudio, l: TtsLayout): { ids: number[]; labels: number[] } {
  const prompt = ttsPrompt(tokenizer, text, l);
  const ids = [...prompt, ...codesToTokens(audio.codes, audio.frames, l), endOfAudio(l)];
  return { ids, labels: ids.map((id, i) => (i < prompt.length ? -100 : id)) };
}
