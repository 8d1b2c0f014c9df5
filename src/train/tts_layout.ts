// How codec codes become LM tokens for text-to-speech: interleaved, frame-major (as Orpheus lays
// out SNAC codes): frame 0's codebooks 0..Q-1, then frame 1's, ..., each codebook with its own
// block of K ids after the text vocabulary (codebook q, code c -> offset + q K + c), between a
// start-of-audio and an end-of-audio token. One token per step keeps the plain causal LM, its loss
// and its KV cache unchanged (MusicGen's delay pattern needs Q heads and summed embeddings), and
// the position of a token fixes its codebook, so generation can be limited to that block.
import { shapeStr } from '../tensor/layout.js';

export interface TtsLayout {
  /** the text vocabulary: audio ids start here */
  offset: number;
  /** codebooks per frame (Q) */
  codebooks: number;
  /** entries per codebook (K) */
  codebookSize: number;
}

/** start-of-audio, end-of-audio ids and the extended vocabulary size */
export const startOfAudio = (l: TtsLayout): number => l.offset + l.codebooks * l.codebookSize;
export const endOfAudio = (l: TtsLayout): number => startOfAudio(l) + 1;
export const extendedVocab = (l: TtsLayout): number => startOfAudio(l) + 2;

/**
 * codes [Q][frames] -> frame-major audio tokens (without start/end of audio).
 * @example codesToTokens([[3, 4], [1, 2]], { offset: 100, codebooks: 2, codebookSize: 8 })  // [103, 109, 104, 110]
 */
export function codesToTokens(codes: ArrayLike<number>, frames: number, l: TtsLayout): number[] {
  if (codes.length !== frames * l.codebooks) throw new Error(`codesToTokens: ${codes.length} codes are not ${l.codebooks} codebooks x ${frames} frames`);
  const out: number[] = [];
  for (let f = 0; f < frames; f++)
    for (let q = 0; q < l.codebooks; q++) out.push(l.offset + q * l.codebookSize + codes[q * frames + f]);
  return out;
}

/** Audio tokens (frame-major, whole frames) -> codes [Q * frames] codebook-major and the frame count. */
export function tokensToCodes(tokens: readonly number[], l: TtsLayout): { codes: number[]; frames: number } {
  const Q = l.codebooks;
  if (tokens.length % Q !== 0) throw new Error(`tokensToCodes: ${tokens.length} tokens are not whole frames of ${Q} codebooks`);
  const frames = tokens.length / Q;
  const codes = new Array<number>(tokens.length);
  tokens.forEach((t, i) => {
    const q = i % Q;
    const c = t - l.offset - q * l.codebookSize;
    if (!(c >= 0 && c < l.codebookSize)) throw new Error(`tokensToCodes: token ${t} at ${i} is not a codebook ${q} id [${l.offset + q * l.codebookSize}, ${l.offset + (q + 1) * l.codebookSize})`);
    codes[q * frames + Math.floor(i / Q)] = c;
  });
  return { codes, frames };
}

/** The id range [lo, hi) the token after `audioSoFar` audio tokens must come from (its codebook's block). */
export function allowedRange(audioSoFar: number, l: TtsLayout): [number, number] {
  const q = audioSoFar % l.codebooks;
  return [l.offset + q * l.codebookSize, l.offset + (q + 1) * l.codebookSize];
}

export const checkCodesShape = (shape: readonly number[], l: TtsLayout): void => {
  if (shape.length !== 2 || shape[0] !== l.codebooks) throw new Error(`tts: codes ${shapeStr(shape)} must be [${l.codebooks}, frames]`);
};
