// resample against torchaudio 0.13.1's functional.resample goldens (Hann default settings on
// 22050 -> 16000, 44100 -> 16000 of a stereo mixdown, 48000 -> 16000 of a chirp, and the Kaiser
// 'kaiser_best' settings), within the 1e-4 of peak (torchaudio builds its filters in
// float32: the README observes up to 1.2e-5 of peak against float64). Plus properties that need
// no golden: equal rates copy, a band-limited sine keeps its amplitude, lengths are
// ceil(new N / orig), and bad settings are named.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { assertClose, hasCpu } from '../helpers.js';
import { fixture } from '../fixtures.js';
import { nearGolden } from './golden.js';

const fx = fixture('audio', 'goldens.safetensors');
const backend = hasCpu() ? 'cpu' : 'ref';

test('resample equals torchaudio.functional.resample (Hann and Kaiser)', { skip: fx.skip }, () => {
  using g = new SafetensorsFile(fx.path);
  k.tidy(() => {
    const mono = g.tensor('wav.tone_44k1_f32_stereo', { backend }).mean(0, true);
    nearGolden(k.resample(g.tensor('wav.speech_22k_s16', { backend }), 22050, 16000), g.tensor('resample.speech_22k_to_16k'), 'speech_22k_to_16k');
    nearGolden(k.resample(mono, 44100, 16000), g.tensor('resample.tone_44k1_mono_to_16k'), 'tone_44k1_mono_to_16k');
    nearGolden(k.resample(g.tensor('wav.chirp_48k_s24', { backend }), 48000, 16000), g.tensor('resample.chirp_48k_to_16k'), 'chirp_48k_to_16k');
    const kaiser = k.resample(mono, 44100, 16000, { lowpassFilterWidth: 64, rolloff: 0.9475937167399596, method: 'kaiser', beta: 14.769656459379492 });
    nearGolden(kaiser, g.tensor('resample.tone_44k1_mono_to_16k_kaiser_best'), 'tone_44k1_mono_to_16k_kaiser_best');
  });
});

test('resample: equal rates copy, lengths ceil(new N / orig), a 440 Hz sine keeps amplitude 1 (up and down)', () => {
  k.tidy(() => {
    const n = 4410;
    const sine = k.tensor(Float32Array.from({ length: n }, (_, i) => Math.sin((2 * Math.PI * 440 * i) / 44100)), { shape: [1, n], backend });
    const same = k.resample(sine, 44100, 44100);
    assertClose(same, sine, { atol: 0, rtol: 0, what: 'equal rates' });
    for (const to of [16000, 48000]) {
      const y = k.resample(sine, 44100, to);
      assert.deepEqual([...y.shape], [1, Math.ceil((to * n) / 44100)]);
      // away from the zero-padded edges the output is the same sine sampled at the new rate
      const v = y.toFloat32Array();
      const want = Array.from({ length: v.length }, (_, i) => Math.sin((2 * Math.PI * 440 * i) / to));
      const mid = (a: ArrayLike<number>): number[] => Array.from(a).slice(Math.floor(v.length * 0.2), Math.floor(v.length * 0.8));
      assertClose(mid(v), mid(want), { atol: 2e-3, rtol: 0, what: `sine 44100 -> ${to}` });
    }
    // leading dims are kept: [2, 3, N] -> [2, 3, N']
    assert.deepEqual([...k.resample(k.zeros([2, 3, 300], { backend }), 300, 200).shape], [2, 3, 200]);
  });
});

test('the Kaiser window needs I0: besselI0 against known values (A&S table 9.8 for 1 and 5; numpy.i0 for beta)', () => {
  assertClose([k.audio.besselI0(0), k.audio.besselI0(1), k.audio.besselI0(5), k.audio.besselI0(14.769656459379492)],
    [1, 1.2660658777520082, 27.239871823604442, 271903.64068146], { atol: 0, rtol: 1e-9, what: 'I0' });
});

test('resample rejects bad rates and settings, naming them', () => {
  const x = k.zeros([100]);
  assert.throws(() => k.resample(x, 0, 16000), /resample fromRate must be an integer >= 1, got 0/);
  assert.throws(() => k.resample(x, 44100.5, 16000), /resample fromRate must be an integer/);
  assert.throws(() => k.resample(x, 16000, 8000, { rolloff: 1.5 }), /resample rolloff must be a number > 0 <= 1, got 1.5/);
  assert.throws(() => k.resample(x, 16000, 8000, { method: 'linear' as 'hann' }), /method must be 'hann' or 'kaiser'/);
  x.dispose();
});
