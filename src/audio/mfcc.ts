// MFCC as torchaudio.transforms.MFCC: the mel spectrogram in dB (top_db 80) or log(mel + 1e-6),
// then a DCT-II over the mel axis (functional.create_dct, 'ortho' or unnormalised).
import { tensor } from '../ops/creation.js';
import { matmul } from '../ops/matmul.js';
import { transpose } from '../ops/view.js';
import { checkNumber } from '../io/check.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { amplitudeToDB } from './db.js';
import { type MelSpectrogramOptions, melSpectrogram } from './mel.js';

/**
 * torchaudio.functional.create_dct: [nMels, nMfcc], column k = cos(pi / nMels (n + 0.5) k); 'ortho'
 * scales by sqrt(2 / nMels) and the k = 0 column by a further 1 / sqrt(2), otherwise by 2.
 */
export function createDctValues(nMfcc: number, nMels: number, norm: 'ortho' | null = 'ortho'): Float64Array {
  const out = new Float64Array(nMels * nMfcc);
  for (let n = 0; n < nMels; n++)
    for (let k = 0; k < nMfcc; k++) {
      const c = Math.cos((Math.PI / nMels) * (n + 0.5) * k);
      out[n * nMfcc + k] = norm === 'ortho' ? c * Math.sqrt(2 / nMels) * (k === 0 ? Math.SQRT1_2 : 1) : 2 * c;
    }
  return out;
}

export const createDct = (nMfcc: number, nMels: number, norm: 'ortho' | null = 'ortho', backend?: string): Tensor =>
  tensor(createDctValues(nMfcc, nMels, norm), { shape: [nMels, nMfcc], dtype: 'float32', backend });

export interface MfccOptions {
  /** default 16000 */
  sampleRate?: number;
  /** default 40 */
  nMfcc?: number;
  /** default 'ortho' */
  norm?: 'ortho' | null;
  /** log(mel + 1e-6) instead of decibels (default false) */
  logMels?: boolean;
  /** the mel spectrogram's options (torchaudio's melkwargs); sampleRate comes from above */
  melkwargs?: Omit<MelSpectrogramOptions, 'sampleRate'>;
}

/**
 * torchaudio.transforms.MFCC: [..., nMfcc, frames].
 * @example mfcc(wave, { nMfcc: 13, melkwargs: { nFft: 400, hopLength: 160, nMels: 40 } })
 */
export function mfcc(x: Tensor, opts: MfccOptions = {}): Tensor {
  const nMfcc = checkNumber(opts.nMfcc ?? 40, { int: true, min: 1 }, 'mfcc nMfcc');
  const nMels = opts.melkwargs?.nMels ?? 128;
  if (nMfcc > nMels) throw new Error(`mfcc: nMfcc ${nMfcc} cannot exceed nMels ${nMels}`);
  return tidy(() => {
    const mel = melSpectrogram(x, { ...opts.melkwargs, sampleRate: opts.sampleRate ?? 16000 });
    const logMel = opts.logMels ? mel.add(1e-6).log() : amplitudeToDB(mel, { stype: 'power', topDb: 80 });
    const dct = createDct(nMfcc, nMels, opts.norm === undefined ? 'ortho' : opts.norm, x.backendName);
    return matmul(transpose(dct), logMel); // [nMfcc, nMels] @ [..., nMels, frames]
  });
}
