// The short-time Fourier transform and spectrogram as torch.stft / torchaudio.transforms.Spectrogram
// compute them: periodic Hann window of win_length centred in n_fft, centre padding of n_fft/2 each
// side (reflect by default), frames = 1 + (L + 2 pad - n_fft) / hop, onesided n_fft/2 + 1 bins.
// Complex output is [..., freq, frames, 2] (torch.view_as_real). The work is the backend's
// spectral kernel (native FFT plans on cpu, a float64 DFT on ref); not differentiable.
import { type BackendName, type SpectralKernels, type StftMode, backendOf, getBackend, hasBackend } from '../backend/index.js';
import { toBackend } from '../ops/transfer.js';
import { empty } from '../ops/dispatch.js';
import { tensor } from '../ops/creation.js';
import { to } from '../ops/elementwise.js';
import { contiguous, reshape } from '../ops/view.js';
import { checkNumber } from '../io/check.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';

export interface StftOptions {
  nFft: number;
  /** default floor(nFft / 4) (torch.stft); Spectrogram's default is winLength / 2 */
  hopLength?: number;
  /** default nFft; the window is zero-padded to nFft, centred */
  winLength?: number;
  /** a [winLength] window tensor, or 'hann' (periodic, the default) / 'ones' */
  window?: Tensor | 'hann' | 'ones';
  /** pad nFft/2 each side so frame t is centred on sample t hop (default true) */
  center?: boolean;
  padMode?: 'reflect' | 'constant';
  /** divide by sqrt(sum(window^2)) (torchaudio's normalized=True, "window") */
  normalized?: boolean;
  onesided?: boolean;
}

/** torch.hann_window(n, periodic): 0.5 - 0.5 cos(2 pi i / N), N = n (periodic) or n - 1. */
export function hannWindow(n: number, periodic = true): Float64Array {
  const w = new Float64Array(n);
  const N = periodic ? n : n - 1;
  for (let i = 0; i < n; i++) w[i] = N === 0 ? 1 : 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / N);
  return w;
}

/**
 * Runs f on a backend with spectral kernels: x's own, else the CPU (native) or the reference
 * backend, with the result moved back to x's backend (a GPU tensor's features are computed on the
 * host, as feature extractors do).
 */
function onSpectralBackend(x: Tensor, f: (x: Tensor, kernels: SpectralKernels) => Tensor): Tensor {
  const own = backendOf(x).spectral;
  if (own) return f(x, own);
  const host = hasBackend('cpu') ? 'cpu' : 'ref';
  return tidy(() => toBackend(f(toBackend(x, host), getBackend(host).spectral!), x.backendName as BackendName));
}

/** The nFft-long window values (window zero-padded and centred), scaled when normalized. */
function windowValues(o: StftOptions, winLength: number): Float64Array {
  let w: Float64Array;
  if (o.window === undefined || o.window === 'hann') w = hannWindow(winLength);
  else if (o.window === 'ones') w = new Float64Array(winLength).fill(1);
  else {
    if (o.window.ndim !== 1 || o.window.shape[0] !== winLength)
      throw new Error(`stft: window must be [winLength = ${winLength}], got [${o.window.shape.join(', ')}]`);
    w = Float64Array.from(o.window.toFloat32Array());
  }
  const full = new Float64Array(o.nFft);
  full.set(w, Math.floor((o.nFft - winLength) / 2));
  if (o.normalized) {
    const norm = Math.sqrt(full.reduce((s, v) => s + v * v, 0));
    for (let i = 0; i < full.length; i++) full[i] /= norm;
  }
  return full;
}

/** Runs the spectral kernel over x [..., L]; frames (when given) overrides the count from the length. */
export function runStft(x: Tensor, o: StftOptions, mode: StftMode, op: string, frames?: number): Tensor {
  const nFft = checkNumber(o.nFft, { int: true, min: 1, max: 2 ** 24 }, `${op} nFft`);
  const winLength = checkNumber(o.winLength ?? nFft, { int: true, min: 1, max: nFft }, `${op} winLength`);
  const hop = checkNumber(o.hopLength ?? Math.floor(nFft / 4), { int: true, min: 1 }, `${op} hopLength`);
  if (x.requiresGrad) throw new Error(`${op}: not differentiable (audio features are computed from data without gradients)`);
  if (x.ndim < 1) throw new Error(`${op}: the signal needs a time dim, got a scalar`);
  const center = o.center ?? true;
  const L = x.shape[x.ndim - 1];
  const pad = center ? Math.floor(nFft / 2) : 0;
  if (center && (o.padMode ?? 'reflect') === 'reflect' && L <= pad)
    throw new Error(`${op}: reflect padding of ${pad} needs a signal longer than ${pad} samples, got ${L}`);
  if (L + 2 * pad < nFft) throw new Error(`${op}: a ${L}-sample signal${center ? ` padded by ${pad} each side` : ''} is shorter than nFft = ${nFft}`);
  const count = frames ?? 1 + Math.floor((L + 2 * pad - nFft) / hop);
  const onesided = o.onesided ?? true;
  const bins = onesided ? Math.floor(nFft / 2) + 1 : nFft;
  const lead = x.shape.slice(0, -1);
  const dtype = x.dtype === 'float64' ? 'float64' : 'float32';
  return onSpectralBackend(x, (xs, kernels) => tidy(() => {
    const rows = reshape(contiguous(to(xs, dtype)), [-1, L]);
    const B = rows.shape[0];
    const w = tensor(windowValues(o, winLength), { dtype, backend: xs.backendName });
    const out = empty(mode === 'complex' ? [B, bins, count, 2] : [B, bins, count], dtype, { backend: xs.backendName });
    kernels.stft(rows, w, { nFft, hop, pad, frames: count, reflect: center && (o.padMode ?? 'reflect') === 'reflect', onesided, mode }, out);
    return reshape(out, mode === 'complex' ? [...lead, bins, count, 2] : [...lead, bins, count]);
  }));
}

/**
 * torch.stft(x, n_fft, ..., return_complex=True) as real pairs: [..., freq, frames, 2].
 * @example stft(wave, { nFft: 400, hopLength: 160 })  // [1, 16000] -> [1, 201, 101, 2]
 */
export const stft = (x: Tensor, opts: StftOptions): Tensor => runStft(x, opts, 'complex', 'stft');

export interface SpectrogramOptions extends Omit<StftOptions, 'nFft'> {
  /** default 400 */
  nFft?: number;
  /** 2 (power, default), 1 (magnitude) or null (complex pairs, as stft) */
  power?: 1 | 2 | null;
}

/** The defaults torchaudio.transforms.Spectrogram applies (hop = winLength / 2). */
export function spectrogramDefaults(o: SpectrogramOptions): StftOptions & { power: 1 | 2 | null } {
  const nFft = o.nFft ?? 400;
  const winLength = o.winLength ?? nFft;
  return { ...o, nFft, winLength, hopLength: o.hopLength ?? Math.floor(winLength / 2), power: o.power === undefined ? 2 : o.power };
}

/**
 * torchaudio.transforms.Spectrogram: |STFT|^power, [..., freq, frames].
 * @example spectrogram(wave, { nFft: 400, hopLength: 160 })  // [1, 44555] -> [1, 201, 279]
 */
export function spectrogram(x: Tensor, opts: SpectrogramOptions = {}): Tensor {
  const o = spectrogramDefaults(opts);
  if (o.power !== null && o.power !== 1 && o.power !== 2) throw new Error(`spectrogram: power must be 1, 2 or null, got ${String(o.power)}`);
  return runStft(x, o, o.power === 2 ? 'power' : o.power === 1 ? 'magnitude' : 'complex', 'spectrogram');
}

/**
 * The complex DFT of each row of x [..., n, 2] (real, imag pairs): [..., n, 2].
 * @example fft(pairs)  // torch.view_as_real(torch.fft.fft(torch.view_as_complex(pairs)))
 */
export function fft(x: Tensor): Tensor {
  if (x.requiresGrad) throw new Error('fft: not differentiable');
  if (x.ndim < 2 || x.shape[x.ndim - 1] !== 2) throw new Error(`fft: x must be [..., n, 2] (real, imag), got [${x.shape.join(', ')}]`);
  const n = x.shape[x.ndim - 2];
  const dtype = x.dtype === 'float64' ? 'float64' : 'float32';
  return onSpectralBackend(x, (xs, kernels) => tidy(() => {
    const rows = reshape(contiguous(to(xs, dtype)), [-1, n, 2]);
    const out = empty(rows.shape, dtype, { backend: xs.backendName });
    kernels.fft(rows, out);
    return reshape(out, x.shape);
  }));
}
