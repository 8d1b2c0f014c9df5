// Features against torchaudio 0.13.1 / transformers 4.44.2 goldens (../shared/fixtures/audio,
// README there): spectrogram, mel spectrograms (HTK; Slaney scale + Slaney norm with f_max),
// amplitude to dB, MFCC, the filter banks and DCT, Whisper log-mel with 80 and 128 bins.
// Tolerance: the 1e-4 relative to each golden's peak (atol = 1e-4 x peak, rtol 1e-4); the
// README's observed float32-vs-float64 differences are up to 2.6e-5 of peak, so 1e-4 is met with margin.
import { skipUnless } from '../devices.js';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { assertClose, hasCpu } from '../helpers.js';
import { fixture } from '../fixtures.js';
import { nearGolden } from './golden.js';

const fx = fixture('audio', 'goldens.safetensors');
const whisperFx = fixture('audio', 'models', 'whisper-tiny-random', 'goldens.safetensors');
const skip = fx.skip || whisperFx.skip || (hasCpu() ? false : 'cpu backend (native addon) not built');

test('spectrogram, mel, dB and MFCC equal torchaudio', { skip }, () => {
  using g = new SafetensorsFile(fx.path);
  k.tidy(() => {
    const s16 = g.tensor('wav.speech_16k_s16', { backend: 'cpu' });
    const s22 = g.tensor('wav.speech_22k_s16', { backend: 'cpu' });
    nearGolden(k.audio.spectrogram(s16, { nFft: 400, hopLength: 160, power: 2 }), g.tensor('spectrogram.speech_16k'), 'spectrogram.speech_16k');
    nearGolden(k.audio.melSpectrogram(s16, { sampleRate: 16000, nFft: 400, hopLength: 160, nMels: 80, melScale: 'htk', norm: null }),
      g.tensor('melspec.speech_16k_htk80'), 'melspec.speech_16k_htk80');
    nearGolden(k.audio.melSpectrogram(s22, { sampleRate: 22050, nFft: 1024, hopLength: 256, nMels: 80, fMin: 0, fMax: 8000, melScale: 'slaney', norm: 'slaney' }),
      g.tensor('melspec.speech_22k_slaney80'), 'melspec.speech_22k_slaney80');
    nearGolden(k.audio.amplitudeToDB(g.tensor('melspec.speech_16k_htk80', { backend: 'cpu' }), { stype: 'power', topDb: null }),
      g.tensor('db.melspec_speech_16k_htk80'), 'db.melspec_speech_16k_htk80');
    nearGolden(k.audio.mfcc(s16, { sampleRate: 16000, nMfcc: 13, melkwargs: { nFft: 400, hopLength: 160, nMels: 40 } }), g.tensor('mfcc.speech_16k'), 'mfcc.speech_16k');
  });
});

test('filter banks and the DCT equal torchaudio and transformers', { skip }, () => {
  using g = new SafetensorsFile(fx.path);
  k.tidy(() => {
    const htk = (nMels: number): k.Tensor => k.audio.melscaleFbanks({ nFreqs: 201, fMin: 0, fMax: 8000, nMels, sampleRate: 16000, norm: null, melScale: 'htk' });
    nearGolden(htk(80), g.tensor('melfb.htk_16k_n400_m80'), 'melfb.htk_16k_n400_m80');
    nearGolden(htk(40), g.tensor('melfb.htk_16k_n400_m40'), 'melfb.htk_16k_n400_m40');
    nearGolden(k.audio.createDct(13, 40, 'ortho'), g.tensor('dct.ortho_13x40'), 'dct.ortho_13x40');
    // transformers builds these in float64 and casts: the same computation, so within float32 rounding
    assertClose(k.audio.whisperMelFilters(80), g.tensor('whisper.mel_filters_80'), { atol: 1e-9, rtol: 1e-6, what: 'whisper.mel_filters_80' });
    assertClose(k.audio.whisperMelFilters(128), g.tensor('whisper.mel_filters_128'), { atol: 1e-9, rtol: 1e-6, what: 'whisper.mel_filters_128' });
  });
});

test('amplitudeToDB with top_db floors each spectrogram at its own max - top_db (float64 formula)', { skip }, () => {
  k.tidy(() => {
    // two spectrograms [2, 1, 2, 2] with peaks 1 (0 dB) and 1e-3 (-30 dB); top_db 20
    const x = k.tensor([1, 1e-4, 1e-1, 1e-2, 1e-3, 1e-8, 1e-4, 1e-5], { shape: [2, 1, 2, 2], backend: 'cpu' });
    const want = [0, -20, -10, -20, -30, -50, -40, -50];
    assertClose(k.audio.amplitudeToDB(x, { topDb: 20 }), want, { atol: 1e-4, rtol: 0, what: 'top_db' });
    assertClose(k.audio.amplitudeToDB(x, { stype: 'magnitude' }).select(0, 0), [0, -80, -20, -40], { atol: 1e-4, rtol: 0, what: 'magnitude' });
  });
});

test('whisperLogMel equals WhisperFeatureExtractor (80 and 128 bins), batched rows equal single ones', { skip }, () => {
  using g = new SafetensorsFile(fx.path);
  using w = new SafetensorsFile(whisperFx.path);
  k.tidy(() => {
    const wave = g.tensor('wav.speech_16k_s16', { backend: 'cpu' }).reshape([-1]);
    const f80 = k.audio.whisperLogMel(wave, { nMels: 80 });
    assert.deepEqual([...f80.shape], [80, 3000]);
    nearGolden(f80, w.tensor('input_features').reshape([80, 3000]), 'whisper.logmel_80 (input_features)');
    nearGolden(k.audio.whisperLogMel(wave, { nMels: 128 }), g.tensor('whisper.logmel_128'), 'whisper.logmel_128');
    // a batch: row 0 the clip, row 1 the clip at half volume (its own max, so its own floor)
    const batch = k.stack([wave, wave.mul(0.5)]);
    const both = k.audio.whisperLogMel(batch, { nMels: 80 });
    assert.deepEqual([...both.shape], [2, 80, 3000]);
    assertClose(both.select(0, 0), f80, { atol: 0, rtol: 0, what: 'batch row 0' });
    assertClose(both.select(0, 1), k.audio.whisperLogMel(wave.mul(0.5)), { atol: 0, rtol: 0, what: 'batch row 1' });
    // longer than 30 s: cut to the first 480000 samples
    const long = k.cat([wave, k.zeros([480000])]);
    assertClose(k.audio.whisperLogMel(long), f80, { atol: 0, rtol: 0, what: 'trimmed to 30 s' });
  });
});

test('features on the reference backend (float64 DFT) agree with the goldens too', { skip: fx.skip }, () => {
  using g = new SafetensorsFile(join(fx.path));
  k.tidy(() => {
    const s16 = g.tensor('wav.speech_16k_s16', { backend: 'ref' });
    nearGolden(k.audio.spectrogram(s16, { nFft: 400, hopLength: 160 }), g.tensor('spectrogram.speech_16k', { backend: 'ref' }), 'ref spectrogram');
  });
});

test('feature functions free every intermediate: live storage returns to its baseline', { skip }, () => {
  const x = k.tensor(Float32Array.from({ length: 20000 }, (_, i) => Math.sin(i / 9)), { shape: [1, 20000], backend: 'cpu' });
  const before = k.memory.stats('cpu').current.total;
  const outs = [
    k.audio.stft(x, { nFft: 400, hopLength: 160 }), k.audio.spectrogram(x), k.audio.melSpectrogram(x, { nMels: 40 }),
    k.audio.mfcc(x, { nMfcc: 13, melkwargs: { nMels: 40 } }), k.audio.whisperLogMel(x.reshape([-1])), k.resample(x, 16000, 22050),
  ];
  const held = outs.reduce((s, t) => s + t.numel * 4, 0);
  assert.equal(k.memory.stats('cpu').current.total - before, held, 'only the outputs stay allocated');
  for (const t of outs) t.dispose();
  assert.equal(k.memory.stats('cpu').current.total, before);
  x.dispose();
});

test('a backend without spectral kernels (cuda) gets the features computed on the host, result on its own backend', { skip: skip || skipUnless('cuda') }, () => {
  k.tidy(() => {
    const wave = k.tensor(Float32Array.from({ length: 8000 }, (_, i) => Math.sin(i / 7) * 0.3), { shape: [1, 8000], backend: 'cpu' });
    const onGpu = k.audio.melSpectrogram(wave.to('cuda'), { nFft: 400, hopLength: 160, nMels: 40 });
    assert.equal(onGpu.backendName, 'cuda');
    // the filter-bank matmul runs on cuda (another summation order): float32 rounding apart
    assertClose(onGpu.to('cpu'), k.audio.melSpectrogram(wave, { nFft: 400, hopLength: 160, nMels: 40 }), { atol: 1e-5, rtol: 1e-5, what: 'mel on cuda' });
  });
});
