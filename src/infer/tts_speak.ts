// Speech from a text-to-speech LM: the prompt (text, start-of-audio) is continued greedily (or
// sampled with a temperature), each step limited to the ids of the codebook its position calls for
// (or end-of-audio at a frame boundary), so every generated sequence decodes; the codes then go
// through the codec's decoder to a waveform.
import { tensor } from '../ops/creation.js';
import { toTypedArray } from '../ops/transfer.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import type { CausalLM } from '../models/causal_lm.js';
import type { EncodecModel } from '../models/encodec.js';
import { type TtsLayout, allowedRange, endOfAudio, tokensToCodes } from '../train/tts_layout.js';
import { generate } from './generate.js';

export interface SpeakOptions {
  /** audio frames at most (default 10 s of the codec's frame rate) */
  maxFrames: number;
  /** 0 (default) = greedy */
  temperature?: number;
  seed?: number;
}

/**
 * The audio tokens the LM continues `prompt` (text ids then start-of-audio) with, as codes
 * [codebooks * frames] (codebook-major) and a frame count; stops at end-of-audio or maxFrames.
 * @example const { codes, frames } = await generateCodes(lm, ttsPrompt(tok, 'hello', layout), layout, { maxFrames: 150 })
 */
export async function generateCodes(lm: CausalLM, prompt: readonly number[], l: TtsLayout, o: SpeakOptions): Promise<{ codes: number[]; frames: number }> {
  const eoa = endOfAudio(l);
  const input = tensor(BigInt64Array.from(prompt, BigInt), { shape: [1, prompt.length] });
  const temperature = o.temperature ?? 0;
  const out = await generate(lm, input, {
    maxNewTokens: o.maxFrames * l.codebooks + 1, eosTokenId: eoa, padTokenId: eoa, doSample: temperature > 0,
    temperature: temperature > 0 ? temperature : undefined, seed: o.seed,
    logitsProcessor: (_row, scores, generated) => {
      const [lo, hi] = allowedRange(generated.length, l);
      const frameBoundary = generated.length % l.codebooks === 0 && generated.length > 0;
      for (let v = 0; v < scores.length; v++) if ((v < lo || v >= hi) && !(frameBoundary && v === eoa)) scores[v] = -Infinity;
    },
  });
  const ids = Array.from(toTypedArray(out) as ArrayLike<number | bigint>, Number).slice(prompt.length);
  input.dispose();
  out.dispose();
  const end = ids.indexOf(eoa);
  const audio = end >= 0 ? ids.slice(0, end) : ids;
  return tokensToCodes(audio.slice(0, audio.length - (audio.length % l.codebooks)), l);
}

/** codes [codebooks * frames] -> waveform [channels, frames x hop] through the codec's decoder. */
export function decodeCodes(codec: EncodecModel, codes: readonly number[], frames: number, l: TtsLayout): Tensor {
  if (frames < 1) throw new Error('speak: the model generated no audio frame (end-of-audio came first)');
  return tidy(() => codec.decode(tensor(BigInt64Array.from(codes, BigInt), { shape: [l.codebooks, frames] })));
}
