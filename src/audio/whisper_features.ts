// Whisper's log-mel input features exactly as transformers' WhisperFeatureExtractor (4.44, its
// torch path) computes them: the waveform zero-padded or cut to 30 s (480000 samples at 16 kHz),
// |STFT(400, hop 160, periodic Hann, centre reflect)|^2 with the last of the 3001 frames dropped,
// a Slaney-scale Slaney-normalised mel bank over 0-8000 Hz, log10(max(mel, 1e-10)), floored at
// its maximum minus 8, then (x + 4) / 4. The STFT is the native kernel; the bank is one matmul.
import { cat } from '../ops/indexing.js';
import { zeros } from '../ops/creation.js';
import { clamp, maximum } from '../ops/elementwise.js';
import { matmul } from '../ops/matmul.js';
import { max } from '../ops/reduce.js';
import { narrow, reshape, transpose } from '../ops/view.js';
import { checkNumber } from '../io/check.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { melscaleFbanks } from './mel.js';
import { runStft } from './stft.js';

export interface WhisperLogMelOptions {
  /** 80 (Whisper up to large-v2) or 128 (large-v3); default 80 */
  nMels?: number;
  /** samples the input is padded or cut to (default 480000 = 30 s at 16 kHz) */
  nSamples?: number;
}

const N_FFT = 400;
const HOP = 160;
const SAMPLE_RATE = 16000;

/** WhisperFeatureExtractor's mel_filters: [201, nMels] float32. */
export const whisperMelFilters = (nMels: number, backend?: string): Tensor =>
  melscaleFbanks({ nFreqs: N_FFT / 2 + 1, fMin: 0, fMax: 8000, nMels, sampleRate: SAMPLE_RATE, norm: 'slaney', melScale: 'slaney' }, backend);

/**
 * Log-mel features of 16 kHz samples [N] -> [nMels, 3000], or a batch [B, N] -> [B, nMels, 3000]
 * (each example floored at its own maximum - 8).
 * @example whisperLogMel(samples, { nMels: 80 })  // [80, 3000]
 */
export function whisperLogMel(samples: Tensor, opts: WhisperLogMelOptions = {}): Tensor {
  const nMels = checkNumber(opts.nMels ?? 80, { int: true, min: 1 }, 'whisperLogMel nMels');
  const nSamples = checkNumber(opts.nSamples ?? 480000, { int: true, min: N_FFT }, 'whisperLogMel nSamples');
  if (samples.ndim !== 1 && samples.ndim !== 2) throw new Error(`whisperLogMel: samples must be [N] or [B, N] at 16 kHz, got [${samples.shape.join(', ')}]`);
  const backend = samples.backendName;
  return tidy(() => {
    const rows = reshape(samples, [-1, samples.shape[samples.ndim - 1]]);
    const [B, N] = rows.shape;
    const fitted = N >= nSamples ? narrow(rows, 1, 0, nSamples) : cat([rows, zeros([B, nSamples - N], { dtype: rows.dtype, backend })], 1);
    // 1 + nSamples / hop frames; the extractor drops the last one, so the kernel never computes it
    const frames = Math.floor(nSamples / HOP);
    const power = runStft(fitted, { nFft: N_FFT, hopLength: HOP }, 'power', 'whisperLogMel', frames);
    const mel = matmul(transpose(whisperMelFilters(nMels, backend)), power); // [B, nMels, frames]
    const logSpec = clamp(mel, 1e-10).log().mul(1 / Math.LN10);
    const peak = max(reshape(logSpec, [B, -1]), -1, true).sub(8).reshape([B, 1, 1]);
    const out = maximum(logSpec, peak).add(4).div(4);
    return samples.ndim === 1 ? reshape(out, [nMels, frames]) : out;
  });
}
