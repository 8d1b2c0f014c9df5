// Mel filter banks and the mel spectrogram as torchaudio computes them (functional.melscale_fbanks,
// transforms.MelSpectrogram); transformers' audio_utils.mel_filter_bank (Whisper) is the same
// formula: triangles between mel-spaced points over linspace(0, sr // 2, n_freqs), optionally
// Slaney area-normalised (2 / (f[m+2] - f[m])). Built in float64, stored float32.
import { tensor } from '../ops/creation.js';
import { matmul } from '../ops/matmul.js';
import { transpose } from '../ops/view.js';
import { checkNumber } from '../io/check.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { type SpectrogramOptions, spectrogram, spectrogramDefaults } from './stft.js';

export type MelScale = 'htk' | 'slaney';

// Slaney's scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above
const F_SP = 200 / 3;
const MIN_LOG_HZ = 1000;
const MIN_LOG_MEL = MIN_LOG_HZ / F_SP;
const LOG_STEP = Math.log(6.4) / 27;

export function hzToMel(f: number, scale: MelScale): number {
  if (scale === 'htk') return 2595 * Math.log10(1 + f / 700);
  return f >= MIN_LOG_HZ ? MIN_LOG_MEL + Math.log(f / MIN_LOG_HZ) / LOG_STEP : f / F_SP;
}

export function melToHz(m: number, scale: MelScale): number {
  if (scale === 'htk') return 700 * (10 ** (m / 2595) - 1);
  return m >= MIN_LOG_MEL ? MIN_LOG_HZ * Math.exp(LOG_STEP * (m - MIN_LOG_MEL)) : F_SP * m;
}

export interface MelFbankOptions {
  nFreqs: number;
  fMin: number;
  fMax: number;
  nMels: number;
  sampleRate: number;
  /** 'slaney': divide each triangle by its width in Hz / 2 (constant area); null: peak 1 */
  norm?: 'slaney' | null;
  melScale?: MelScale;
}

const linspace = (a: number, b: number, n: number): Float64Array =>
  Float64Array.from({ length: n }, (_, i) => (n === 1 ? a : a + ((b - a) * i) / (n - 1)));

/**
 * torchaudio.functional.melscale_fbanks: [nFreqs, nMels] in float64 (row f: weights of frequency bin f).
 * @example melFilterValues({ nFreqs: 201, fMin: 0, fMax: 8000, nMels: 80, sampleRate: 16000, norm: 'slaney', melScale: 'slaney' })
 */
export function melFilterValues(o: MelFbankOptions): Float64Array {
  const scale = o.melScale ?? 'htk';
  if (scale !== 'htk' && scale !== 'slaney') throw new Error(`melscaleFbanks: melScale must be 'htk' or 'slaney', got '${String(scale)}'`);
  if (o.norm != null && o.norm !== 'slaney') throw new Error(`melscaleFbanks: norm must be 'slaney' or null, got '${String(o.norm)}'`);
  checkNumber(o.nFreqs, { int: true, min: 1 }, 'melscaleFbanks nFreqs');
  checkNumber(o.nMels, { int: true, min: 1 }, 'melscaleFbanks nMels');
  checkNumber(o.fMin, { min: 0 }, 'melscaleFbanks fMin');
  checkNumber(o.fMax, { above: o.fMin }, 'melscaleFbanks fMax');
  const freqs = linspace(0, Math.floor(o.sampleRate / 2), o.nFreqs);
  const pts = linspace(hzToMel(o.fMin, scale), hzToMel(o.fMax, scale), o.nMels + 2).map((m) => melToHz(m, scale));
  const fb = new Float64Array(o.nFreqs * o.nMels);
  for (let m = 0; m < o.nMels; m++) {
    const [lo, mid, hi] = [pts[m], pts[m + 1], pts[m + 2]];
    const enorm = o.norm === 'slaney' ? 2 / (hi - lo) : 1;
    for (let f = 0; f < o.nFreqs; f++) {
      const down = (freqs[f] - lo) / (mid - lo);
      const up = (hi - freqs[f]) / (hi - mid);
      fb[f * o.nMels + m] = Math.max(0, Math.min(down, up)) * enorm;
    }
  }
  return fb;
}

/** melFilterValues as a float32 tensor [nFreqs, nMels] on `backend` (default backend when omitted). */
export const melscaleFbanks = (o: MelFbankOptions, backend?: string): Tensor =>
  tensor(melFilterValues(o), { shape: [o.nFreqs, o.nMels], dtype: 'float32', backend });

export interface MelSpectrogramOptions extends SpectrogramOptions {
  /** default 16000 */
  sampleRate?: number;
  /** default 0 */
  fMin?: number;
  /** default floor(sampleRate / 2) (torchaudio) */
  fMax?: number;
  /** default 128 */
  nMels?: number;
  /** default null */
  norm?: 'slaney' | null;
  /** default 'htk' */
  melScale?: MelScale;
}

/**
 * torchaudio.transforms.MelSpectrogram: filter bank applied to |STFT|^power, [..., nMels, frames].
 * @example melSpectrogram(wave, { sampleRate: 16000, nFft: 400, hopLength: 160, nMels: 80 })  // [1, 80, frames]
 */
export function melSpectrogram(x: Tensor, opts: MelSpectrogramOptions = {}): Tensor {
  const o = spectrogramDefaults(opts);
  if (o.power === null) throw new Error('melSpectrogram: power must be 1 or 2 (a mel bank applies to a real spectrogram)');
  const sampleRate = opts.sampleRate ?? 16000;
  return tidy(() => {
    const spec = spectrogram(x, o);
    const fb = melscaleFbanks({
      nFreqs: Math.floor(o.nFft / 2) + 1, fMin: opts.fMin ?? 0, fMax: opts.fMax ?? Math.floor(sampleRate / 2), nMels: opts.nMels ?? 128,
      sampleRate, norm: opts.norm ?? null, melScale: opts.melScale ?? 'htk',
    }, x.backendName);
    return matmul(transpose(fb), spec); // [nMels, freq] @ [..., freq, frames]
  });
}
