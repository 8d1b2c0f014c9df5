// Containers other than WAV through ffmpeg: the FLAC clip decodes bit-exactly to the 16-bit WAV
// it was made from (FLAC is lossless; README), the MP3 clip to ffmpeg 5.1's golden decoding with
// the LAME tag's gapless trim (44555 frames; MP3 decoders differ by ~1e-6, so 1e-5 of peak), and
// loadAudio's options apply after decoding. A missing ffmpeg and a file that is not audio each
// give an error naming the file.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { assertClose, withEnv } from '../helpers.js';
import { fixture } from '../fixtures.js';
import { nearGolden } from './golden.js';

const fx = fixture('audio');
const noFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0 ? false : 'ffmpeg is not installed (apt-get install ffmpeg)';
if (noFfmpeg && process.env.CI === 'true') throw new Error('CI must have ffmpeg (.ci/run installs it)');
const skip = fx.skip || noFfmpeg;
const dir = mkdtempSync(join(tmpdir(), 'kestrel-ffmpeg-'));

test('FLAC decodes bit-exactly to the source WAV; MP3 equals ffmpeg\'s gapless golden', { skip }, () => {
  using g = new SafetensorsFile(join(fx.path, 'goldens.safetensors'));
  k.tidy(() => {
    const flac = k.loadAudio(join(fx.path, 'clips', 'speech_16k.flac'));
    assert.equal(flac.sampleRate, 16000);
    assertClose(flac.samples, g.tensor('wav.speech_16k_s16'), { atol: 0, rtol: 0, what: 'flac' });
    const mp3 = k.loadAudio(join(fx.path, 'clips', 'speech_16k.mp3'));
    assert.deepEqual([mp3.sampleRate, ...mp3.samples.shape], [16000, 1, 44555]);
    nearGolden(mp3.samples, g.tensor('mp3.speech_16k'), 'mp3', 1e-5);
    // options apply to ffmpeg's output as to a WAV's
    const at8k = k.loadAudio(join(fx.path, 'clips', 'speech_16k.flac'), { sampleRate: 8000 });
    assertClose(at8k.samples, k.resample(g.tensor('wav.speech_16k_s16'), 16000, 8000), { atol: 0, rtol: 0, what: 'flac resampled' });
  });
});

test('a stereo Ogg Vorbis made here keeps its channels (ffprobe) and length', { skip: noFfmpeg }, () => {
  k.tidy(() => {
    const frames = 8000;
    const tone = Float32Array.from({ length: 2 * frames }, (_, i) => 0.5 * Math.sin((2 * Math.PI * (i < frames ? 440 : 660) * (i % frames)) / 16000));
    const wav = join(dir, 'tone.wav');
    const ogg = join(dir, 'tone.ogg');
    k.saveWav(wav, k.tensor(tone, { shape: [2, frames] }), 16000, { bits: 16 });
    const enc = spawnSync('ffmpeg', ['-nostdin', '-v', 'error', '-y', '-i', wav, '-c:a', 'libvorbis', '-q:a', '8', ogg]);
    assert.equal(enc.status, 0, enc.stderr?.toString());
    const { samples, sampleRate } = k.loadAudio(ogg);
    assert.deepEqual([sampleRate, ...samples.shape], [16000, 2, frames]);
    // lossy: the channels stay apart (each correlates with its own tone, not the other's)
    const [l, r] = [samples.select(0, 0), samples.select(0, 1)];
    const [tl, tr] = [k.tensor(tone.subarray(0, frames)), k.tensor(tone.subarray(frames))];
    const corr = (a: k.Tensor, b: k.Tensor): number => a.mul(b).sum().item() / Math.sqrt(a.mul(a).sum().item() * b.mul(b).sum().item());
    assert.ok(corr(l, tl) > 0.99 && corr(r, tr) > 0.99 && Math.abs(corr(l, tr)) < 0.1, `channel correlations ${corr(l, tl)}, ${corr(r, tr)}, ${corr(l, tr)}`);
  });
});

test('ffmpeg missing: the error names the file and says what to install', { skip: fx.skip }, () => {
  const flac = join(fx.path, 'clips', 'speech_16k.flac');
  withEnv('KESTREL_FFMPEG', '/nonexistent/bin/ffmpeg', () => {
    assert.throws(() => k.loadAudio(flac), (e: Error) => e.message.startsWith(`${flac}: decoding this format needs ffmpeg, which is not installed`));
  });
});

test('a file that is not audio (text named .mp3) and a missing file: errors name the file', { skip: noFfmpeg }, () => {
  const path = join(dir, 'notes.mp3');
  writeFileSync(path, 'not audio at all\n'.repeat(20));
  assert.throws(() => k.loadAudio(path), (e: Error) => e.message.startsWith(`${path}: not an audio file`));
  assert.throws(() => k.loadAudio(join(dir, 'nowhere.flac')), /nowhere\.flac: cannot open/);
});
