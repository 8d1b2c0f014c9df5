// The native FFT plans (native/fft.cc: radix 4/2/3 butterflies, generic odd radix, Bluestein for
// prime factors above 31, the real-input half-length trick) and the STFT kernel (native/stft.cc)
// against the float64 direct DFT of the reference backend, on odd sizes: 1, 2, 7 (generic radix),
// 33 (3 x 11), 257 (prime: Bluestein), 400 (Whisper: 4 x 4 x 5 x 5), 1021 (prime, long). Both run
// in float64 inside; the native result is rounded to float32 once, so it matches the reference to
// float32 rounding of the largest bin (atol 1e-6 x peak, rtol 1e-5). An analytic check keeps the
// reference honest: the DFT of a complex exponential at bin m is n at m and zero elsewhere.
// The stages compile for AVX2+FMA and the x86-64 baseline: the baseline runs in a child process
// with KESTREL_SIMD=scalar (the addon reads the CPU features once per process), 1 and 2 threads.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as k from '../../src/index.js';
import { assertClose, hasCpu, onCpuThreads, runChild, seeded } from '../helpers.js';
import { peakOf } from './golden.js';

const SIZES = [1, 2, 7, 33, 257, 400, 1021];
const skip = hasCpu() ? false : 'cpu backend (native addon) not built';
// the child process (KESTREL_FFT_CHILD) only runs the checks, never the tests
const CHILD = process.env.KESTREL_FFT_CHILD === '1';

function compareToRef(got: k.Tensor, want: k.Tensor, what: string): void {
  assertClose(got, want, { atol: 1e-6 * Math.max(peakOf(want), 1), rtol: 1e-5, what });
}

if (!CHILD) test('reference DFT of a complex exponential is a scaled delta (analytic)', () => {
  for (const n of [1, 7, 12, 33]) {
    const m = n > 3 ? 3 : 0;
    const pairs = new Float64Array(2 * n);
    for (let j = 0; j < n; j++) {
      pairs[2 * j] = Math.cos((2 * Math.PI * m * j) / n);
      pairs[2 * j + 1] = Math.sin((2 * Math.PI * m * j) / n);
    }
    const got = k.audio.fft(k.tensor(pairs, { shape: [n, 2], dtype: 'float64', backend: 'ref' }));
    const want = new Float64Array(2 * n);
    want[2 * m] = n;
    assertClose(got, want, { atol: 1e-9 * n, rtol: 0, what: `ref dft n=${n}` });
    got.dispose();
  }
});

/** The native complex FFT of 3 rows against the reference DFT, for each length. */
function checkFft(sizes: readonly number[]): void {
  for (const n of sizes) {
    k.tidy(() => {
      const data = Float32Array.from(seeded(3 * n * 2, n));
      const cpu = k.audio.fft(k.tensor(data, { shape: [3, n, 2], backend: 'cpu' }));
      const ref = k.audio.fft(k.tensor(Float64Array.from(data), { shape: [3, n, 2], dtype: 'float64', backend: 'ref' }));
      compareToRef(cpu, ref, `fft n=${n}`);
    });
  }
}

/** The native STFT in the given modes against the reference DFT of the same frames. */
function checkStft(sizes: readonly number[], modes: readonly ('complex' | 'power' | 'magnitude')[]): void {
  for (const nFft of sizes) {
    const L = 3 * nFft + 5; // frames overhang the end: the reflect and zero paths both run
    const data = Float32Array.from(seeded(2 * L, 7 + nFft));
    for (const mode of modes) {
      for (const padMode of ['reflect', 'constant'] as const) {
        for (const onesided of [true, false]) {
          k.tidy(() => {
            const opts = { nFft, hopLength: Math.max(1, Math.floor(nFft / 3)), padMode, onesided };
            const run = (x: k.Tensor): k.Tensor =>
              mode === 'complex' ? k.audio.stft(x, opts) : k.audio.spectrogram(x, { ...opts, power: mode === 'power' ? 2 : 1 });
            const cpu = run(k.tensor(data, { shape: [2, L], backend: 'cpu' }));
            const ref = run(k.tensor(Float64Array.from(data), { shape: [2, L], dtype: 'float64', backend: 'ref' }));
            compareToRef(cpu, ref, `stft n_fft=${nFft} ${mode} ${padMode} onesided=${onesided}`);
          });
        }
      }
    }
  }
}

if (CHILD) {
  onCpuThreads(() => {
    checkFft(SIZES);
    checkStft([7, 257, 400], ['complex', 'power']);
  });
}

if (!CHILD) test('native complex FFT equals the float64 DFT on odd sizes', { skip }, () => checkFft(SIZES));

if (!CHILD) test('native STFT equals the float64 DFT of the frames: every mode, padding and odd n_fft', { skip }, () =>
  checkStft(SIZES, ['complex', 'power', 'magnitude']));

if (!CHILD) test('the baseline (non-AVX2) stages under KESTREL_SIMD=scalar, 1 and 2 threads (child process)', { skip }, () => {
  const out = runChild(fileURLToPath(import.meta.url), { KESTREL_SIMD: 'scalar', KESTREL_FFT_CHILD: '1' }, 120_000);
  assert.match(out, /ok .*"avx2":false/);
});

if (!CHILD) test('STFT shapes follow torch.stft: 1 + (L + 2 (n_fft / 2) - n_fft) / hop frames, n_fft / 2 + 1 bins', { skip }, () => {
  k.tidy(() => {
    const x = k.tensor(Float32Array.from(seeded(3 * 1000, 3)), { shape: [3, 1000], backend: 'cpu' });
    assert.deepEqual([...k.audio.stft(x, { nFft: 400, hopLength: 160 }).shape], [3, 201, 7, 2]);
    assert.deepEqual([...k.audio.stft(x, { nFft: 64 }).shape], [3, 33, 63, 2]); // default hop n_fft / 4 = 16
    assert.deepEqual([...k.audio.spectrogram(x, { nFft: 64, center: false }).shape], [3, 33, 30]); // default hop win / 2
    assert.deepEqual([...k.audio.spectrogram(x.reshape([3, 1, 1000]), { nFft: 33, hopLength: 10 }).shape], [3, 1, 17, 100]); // 1 + floor(999 / 10)
  });
});

if (!CHILD) test('STFT errors: reflect padding longer than the signal, gradients, a window of the wrong size', { skip }, () => {
  k.tidy(() => {
    const short = k.tensor(new Float32Array(100), { shape: [1, 100], backend: 'cpu' });
    assert.throws(() => k.audio.stft(short, { nFft: 400 }), /reflect padding of 200 needs a signal longer than 200 samples, got 100/);
    const g = k.tensor(new Float32Array(1000), { backend: 'cpu', requiresGrad: true });
    assert.throws(() => k.audio.spectrogram(g), /not differentiable/);
    assert.throws(() => k.audio.stft(k.zeros([1000], { backend: 'cpu' }), { nFft: 64, winLength: 32, window: k.ones([30]) }), /window must be \[winLength = 32\]/);
  });
});
