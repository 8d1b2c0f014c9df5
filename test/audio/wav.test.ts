// The WAV reader and writer. Reading: the fixture clips (16-bit PCM, 44-byte header; IEEE float
// stereo with a fact chunk; WAVE_FORMAT_EXTENSIBLE 24-bit) decode bit-exactly to soundfile's
// float32 goldens. Writing: every encoding round-trips exactly for samples k / 2^(bits-1) (what
// the quantiser can hold), chooses the header the format needs, and clips at full scale.
// Chunk walking: unknown chunks (LIST with an odd size and its pad byte, JUNK) are skipped.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { assertClose } from '../helpers.js';
import { fixture } from '../fixtures.js';
import { fmtBody, riff } from './wav_bytes.js';

const fx = fixture('audio');
const dir = mkdtempSync(join(tmpdir(), 'kestrel-wav-'));

test('fixture WAVs decode bit-exactly to soundfile (PCM16, float32 + fact, EXTENSIBLE 24-bit)', { skip: fx.skip }, () => {
  using g = new SafetensorsFile(join(fx.path, 'goldens.safetensors'));
  const clips: [string, number, number, number][] = [
    ['speech_16k_s16', 16000, 1, 44555], ['speech_22k_s16', 22050, 1, 61402],
    ['tone_44k1_f32_stereo', 44100, 2, 66150], ['chirp_48k_s24', 48000, 1, 36000],
  ];
  for (const [name, rate, channels, frames] of clips) {
    const a = k.audio.readWav(join(fx.path, 'clips', `${name}.wav`));
    assert.deepEqual([a.sampleRate, a.channels, a.frames], [rate, channels, frames], name);
    assertClose(a.data, g.readArray(`wav.${name}`) as Float32Array, { atol: 0, rtol: 0, what: name });
  }
});

/** Samples k / 2^(bits-1) in [-1, 1), so every encoding holds them exactly. */
function exactSamples(channels: number, frames: number, bits: number): Float32Array {
  const full = 2 ** (Math.min(bits, 24) - 1); // float32 holds 24 significant bits
  return Float32Array.from({ length: channels * frames }, (_, i) => (((i * 7919) % (2 * full)) - full) / full);
}

test('writer round-trips every encoding exactly, with the header each needs', () => {
  const cases: { bits: 8 | 16 | 24 | 32 | 64; float: boolean; tag: number }[] = [
    { bits: 8, float: false, tag: 1 }, { bits: 16, float: false, tag: 1 }, { bits: 24, float: false, tag: 0xfffe },
    { bits: 32, float: false, tag: 0xfffe }, { bits: 32, float: true, tag: 3 }, { bits: 64, float: true, tag: 3 },
  ];
  for (const c of cases) {
    for (const channels of [1, 2, 3]) {
      const frames = 37;
      const data = exactSamples(channels, frames, c.bits);
      const bytes = k.audio.encodeWav({ data, channels, frames, sampleRate: 8000 }, { bits: c.bits, float: c.float });
      const tag = new DataView(bytes.buffer).getUint16(20, true);
      // more than 2 channels of PCM also needs WAVE_FORMAT_EXTENSIBLE
      assert.equal(tag, !c.float && channels > 2 ? 0xfffe : c.tag, `${c.bits}-bit ${c.float ? 'float' : 'PCM'} x${channels} format tag`);
      const back = k.audio.parseWav(bytes, 'roundtrip.wav');
      assert.deepEqual([back.channels, back.frames, back.sampleRate], [channels, frames, 8000]);
      assertClose(back.data, data, { atol: 0, rtol: 0, what: `${c.bits}-bit ${c.float ? 'float' : 'PCM'} x${channels}` });
    }
  }
});

test('PCM scaling is 2^-(bits-1) with uint8 centred at 128; writing clips at full scale', () => {
  const bytes = k.audio.encodeWav({ data: Float32Array.from([1, -1, 0.5, 2, -2]), channels: 1, frames: 5, sampleRate: 8000 }, { bits: 8 });
  const body = bytes.subarray(bytes.length - 5 - 1); // 5 data bytes + pad byte (odd size)
  assert.deepEqual([...body.subarray(0, 5)], [255, 0, 192, 255, 0]);
  assertClose(k.audio.parseWav(bytes, 'u8.wav').data, [127 / 128, -1, 0.5, 127 / 128, -1], { atol: 0, rtol: 0 });
  const s16 = k.audio.parseWav(k.audio.encodeWav({ data: Float32Array.from([1, -1]), channels: 1, frames: 2, sampleRate: 8000 }), 's16.wav');
  assertClose(s16.data, [32767 / 32768, -1], { atol: 0, rtol: 0 });
});

test('extra chunks are skipped: LIST of odd size (pad byte) before fmt, fact, JUNK after data', () => {
  const pcm = Buffer.alloc(6);
  [1000, -2000, 32767].forEach((v, i) => pcm.writeInt16LE(v, 2 * i));
  const bytes = riff([['LIST', Buffer.from('INFOISFT\x05\x00\x00\x00abcde')], ['fmt ', fmtBody(1, 16000, 16)], ['fact', Buffer.alloc(4)],
    ['data', pcm], ['JUNK', Buffer.alloc(3)]]);
  const a = k.audio.parseWav(bytes, 'chunks.wav');
  assertClose(a.data, [1000 / 32768, -2000 / 32768, 32767 / 32768], { atol: 0, rtol: 0 });
  // interleaved stereo 24-bit in a plain (non-extensible) fmt: planar out
  const s24 = Buffer.from([0x00, 0x00, 0x80, 0xff, 0xff, 0x7f, 0x01, 0x00, 0x00, 0xff, 0xff, 0xff]);
  const st = k.audio.parseWav(riff([['fmt ', fmtBody(2, 8000, 24)], ['data', s24]]), 's24.wav');
  assertClose(st.data, [-1, 1 / 8388608, 8388607 / 8388608, -1 / 8388608], { atol: 0, rtol: 0 });
});

test('saveWav and loadAudio: tensors [channels, frames], mono mixdown by mean, resampling on load', () => {
  k.tidy(() => {
    const frames = 1600;
    const left = Float32Array.from({ length: frames }, (_, i) => Math.round(16384 * Math.sin(i / 7)) / 32768);
    const right = Float32Array.from({ length: frames }, (_, i) => Math.round(8192 * Math.cos(i / 5)) / 32768);
    const stereo = k.tensor(Float32Array.from([...left, ...right]), { shape: [2, frames] });
    const path = join(dir, 'stereo.wav');
    k.saveWav(path, stereo, 16000, { bits: 16 });
    const loaded = k.loadAudio(path);
    assert.equal(loaded.sampleRate, 16000);
    assertClose(loaded.samples, stereo, { atol: 0, rtol: 0, what: 'saveWav -> loadAudio' });
    const mono = k.loadAudio(path, { mono: true });
    assertClose(mono.samples, stereo.mean(0, true), { atol: 0, rtol: 0, what: 'mono = mean of channels' });
    const at8k = k.loadAudio(path, { sampleRate: 8000, mono: true });
    assert.equal(at8k.sampleRate, 8000);
    assertClose(at8k.samples, k.resample(stereo.mean(0, true), 16000, 8000), { atol: 0, rtol: 0, what: 'resampled on load' });
    k.saveWav(join(dir, 'mono_f32.wav'), k.tensor(left), 16000, { bits: 32, float: true });
    assertClose(k.loadAudio(join(dir, 'mono_f32.wav')).samples.reshape([-1]), left, { atol: 0, rtol: 0, what: '[frames] saved as mono float' });
    assert.throws(() => k.saveWav(join(dir, 'bad.wav'), stereo, 16000, { bits: 12 as 16 }), /12-bit PCM is not a WAV encoding/);
  });
});
