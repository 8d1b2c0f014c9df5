// Reference spectral kernels: the DFT by its definition, X[k] = sum_n x[n] e^{-2 pi i k n / N},
// in float64 with an exact twiddle table (angle index k n mod N). O(N^2) per frame: the oracle the
// native FFT plans (native/fft.cc) and every feature golden are checked against.
import type { SpectralKernels } from '../kernels.js';
import { load, store } from './storage.js';

/** cos and sin of 2 pi j / n for j < n. */
function twiddles(n: number): { cos: Float64Array; sin: Float64Array } {
  const cos = new Float64Array(n);
  const sin = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    cos[j] = Math.cos((2 * Math.PI * j) / n);
    sin[j] = Math.sin((2 * Math.PI * j) / n);
  }
  return { cos, sin };
}

/**
 * The complex DFT of (re, im) of length n into (outRe, outIm), bins [0, bins).
 * @example dft(re, im, n, n, outRe, outIm)
 */
export function dft(re: Float64Array, im: Float64Array, bins: number, outRe: Float64Array, outIm: Float64Array, tw = twiddles(re.length)): void {
  const n = re.length;
  for (let k = 0; k < bins; k++) {
    let sr = 0;
    let si = 0;
    for (let j = 0, a = 0; j < n; j++, a = (a + k) % n) {
      // e^{-i theta} (re + i im) with theta = 2 pi (k j mod n) / n
      sr += re[j] * tw.cos[a] + im[j] * tw.sin[a];
      si += im[j] * tw.cos[a] - re[j] * tw.sin[a];
    }
    outRe[k] = sr;
    outIm[k] = si;
  }
}

export const spectral: SpectralKernels = {
  stft(x, window, o, out) {
    const [B, L] = x.layout.shape;
    const xs = load(x);
    const w = load(window);
    const bins = o.onesided ? Math.floor(o.nFft / 2) + 1 : o.nFft;
    const per = o.mode === 'complex' ? 2 : 1;
    const res = new Float64Array(B * bins * o.frames * per);
    const tw = twiddles(o.nFft);
    const re = new Float64Array(o.nFft);
    const im = new Float64Array(o.nFft);
    const sr = new Float64Array(bins);
    const si = new Float64Array(bins);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < o.frames; t++) {
        for (let n = 0; n < o.nFft; n++) {
          const i = t * o.hop - o.pad + n;
          const inside = i >= 0 && i < L;
          if (!inside && !o.reflect) {
            re[n] = 0;
            continue;
          }
          const r = inside ? i : i < 0 ? -i : 2 * (L - 1) - i;
          if (r < 0 || r >= L) throw new Error(`stft: reflect padding reads sample ${i} of a ${L}-sample signal (it needs a longer one)`);
          re[n] = xs[b * L + r] * w[n];
        }
        dft(re, im, bins, sr, si, tw);
        for (let k = 0; k < bins; k++) {
          const at = ((b * bins + k) * o.frames + t) * per;
          const p = sr[k] * sr[k] + si[k] * si[k];
          if (o.mode === 'complex') {
            res[at] = sr[k];
            res[at + 1] = si[k];
          } else res[at] = o.mode === 'power' ? p : Math.sqrt(p);
        }
      }
    }
    store(out, res);
  },
  fft(x, out) {
    const [B, n] = x.layout.shape;
    const v = load(x);
    const res = new Float64Array(v.length);
    const tw = twiddles(n);
    const re = new Float64Array(n);
    const im = new Float64Array(n);
    const outRe = new Float64Array(n);
    const outIm = new Float64Array(n);
    for (let b = 0; b < B; b++) {
      for (let j = 0; j < n; j++) {
        re[j] = v[(b * n + j) * 2];
        im[j] = v[(b * n + j) * 2 + 1];
      }
      dft(re, im, n, outRe, outIm, tw);
      for (let j = 0; j < n; j++) {
        res[(b * n + j) * 2] = outRe[j];
        res[(b * n + j) * 2 + 1] = outIm[j];
      }
    }
    store(out, res);
  },
};
