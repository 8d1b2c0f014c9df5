// Band-limited resampling equal to torchaudio.functional.resample (0.13; 2.x renames the windows
// "sinc_interp_hann" / "sinc_interp_kaiser"): both rates divided by their gcd (orig, new), one
// windowed-sinc filter per output phase i < new over K = 2 width + orig input samples,
// width = ceil(lowpass_filter_width orig / (min(orig, new) rolloff)), the input zero-padded by width
// left and width + orig right, and the filters applied every orig samples. The strided filtering
// is one matmul of the overlapping input frames [F, K] (a strided view, no copy) by the filters.
import { cat } from '../ops/indexing.js';
import { tensor, zeros } from '../ops/creation.js';
import { to } from '../ops/elementwise.js';
import { matmul } from '../ops/matmul.js';
import { clone, contiguous, narrow, reshape, transpose } from '../ops/view.js';
import { checkNumber } from '../io/check.js';
import { Layout } from '../tensor/layout.js';
import { tidy } from '../tensor/scope.js';
import { Tensor } from '../tensor/tensor.js';

export interface ResampleOptions {
  /** zero crossings of the sinc on each side (default 6) */
  lowpassFilterWidth?: number;
  /** cutoff as a fraction of the lower Nyquist frequency (default 0.99) */
  rolloff?: number;
  /** 'hann' (torchaudio's default "sinc_interpolation") or 'kaiser' ("kaiser_window") */
  method?: 'hann' | 'kaiser';
  /** Kaiser window shape (default 14.769656459379492, torchaudio's) */
  beta?: number;
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** The modified Bessel function I0 by its power series sum ((x/2)^k / k!)^2 (x up to ~700). */
export function besselI0(x: number): number {
  const q = (x * x) / 4;
  let term = 1;
  let sum = 1;
  for (let k = 1; k < 500 && term > sum * 1e-17; k++) {
    term *= q / (k * k);
    sum += term;
  }
  return sum;
}

/**
 * The filters [new, K] (row i: output phase i) and width, in float64, for rates already divided
 * by their gcd.
 */
export function sincResampleKernel(orig: number, neu: number, o: Required<ResampleOptions>): { kernel: Float64Array; width: number; taps: number } {
  const lpw = o.lowpassFilterWidth;
  const base = Math.min(orig, neu) * o.rolloff;
  const width = Math.ceil((lpw * orig) / base);
  const taps = 2 * width + orig;
  const kernel = new Float64Array(neu * taps);
  const i0Beta = besselI0(o.beta);
  for (let i = 0; i < neu; i++) {
    for (let j = 0; j < taps; j++) {
      // time of input tap j relative to output i, in units of the cutoff period, clamped to the window
      let t = (-i / neu + (j - width) / orig) * base;
      t = Math.max(-lpw, Math.min(lpw, t));
      const window = o.method === 'hann'
        ? Math.cos((t * Math.PI) / lpw / 2) ** 2
        : besselI0(o.beta * Math.sqrt(1 - (t / lpw) ** 2)) / i0Beta;
      const pt = t * Math.PI;
      kernel[i * taps + j] = (pt === 0 ? 1 : Math.sin(pt) / pt) * window * (base / orig);
    }
  }
  return { kernel, width, taps };
}

function options(o: ResampleOptions): Required<ResampleOptions> {
  const method = o.method ?? 'hann';
  if (method !== 'hann' && method !== 'kaiser') throw new Error(`resample: method must be 'hann' or 'kaiser', got '${String(method)}'`);
  return {
    lowpassFilterWidth: checkNumber(o.lowpassFilterWidth ?? 6, { int: true, min: 1 }, 'resample lowpassFilterWidth'),
    rolloff: checkNumber(o.rolloff ?? 0.99, { above: 0, max: 1 }, 'resample rolloff'),
    method,
    beta: checkNumber(o.beta ?? 14.769656459379492, { min: 0 }, 'resample beta'),
  };
}

/**
 * Resamples the last dim of `samples` (any leading dims) from fromRate to toRate Hz.
 * @example resample(wave, 44100, 16000)  // [1, 66150] -> [1, 24000]
 */
export function resample(samples: Tensor, fromRate: number, toRate: number, opts: ResampleOptions = {}): Tensor {
  checkNumber(fromRate, { int: true, min: 1 }, 'resample fromRate');
  checkNumber(toRate, { int: true, min: 1 }, 'resample toRate');
  const o = options(opts);
  if (samples.requiresGrad) throw new Error('resample: not differentiable (resampling prepares data; call it on tensors without gradients)');
  if (samples.ndim < 1) throw new Error('resample: samples need a time dim, got a scalar');
  if (fromRate === toRate) return clone(samples);
  const g = gcd(fromRate, toRate);
  const orig = fromRate / g;
  const neu = toRate / g;
  const { kernel, width, taps } = sincResampleKernel(orig, neu, o);
  const N = samples.shape[samples.ndim - 1];
  const lead = samples.shape.slice(0, -1);
  const dtype = samples.dtype === 'float64' ? 'float64' : 'float32';
  const backend = samples.backendName;
  return tidy(() => {
    const rows = reshape(contiguous(to(samples, dtype)), [-1, N]);
    const R = rows.shape[0];
    const padded = cat([zeros([R, width], { dtype, backend }), rows, zeros([R, width + orig], { dtype, backend })], 1);
    const Lp = N + 2 * width + orig;
    const F = Math.floor(N / orig) + 1;
    // frame f = padded[r, f orig .. f orig + taps): overlapping rows of one storage
    const frames = new Tensor(padded.storage.retain(), new Layout([R, F, taps], [Lp, orig, 1], padded.layout.offset));
    const filters = tensor(kernel, { shape: [neu, taps], dtype, backend });
    const out = reshape(matmul(frames, transpose(filters)), [R, F * neu]); // [R, F, new] -> time order
    const target = Math.ceil((neu * N) / orig);
    // a copy, so the result holds exactly its own samples (not the last frame's overhang)
    return reshape(target === F * neu ? out : clone(narrow(out, 1, 0, target)), [...lead, target]);
  });
}
