// Malformed audio gets an error naming the file and what is wrong, never a read out of bounds:
// a truncated data chunk, a chunk size past the end, zero channels, a huge declared size, a text
// file named .wav, a missing fmt or data chunk, an unsupported encoding; then every prefix of a
// real file and seeded byte corruptions of its header, each of which must either decode or throw
// the reader's own error (a DataView RangeError would mean a read past the buffer).
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { seeded } from '../helpers.js';
import { fmtBody, riff } from './wav_bytes.js';

const dir = mkdtempSync(join(tmpdir(), 'kestrel-bad-wav-'));

/** A valid 16-bit mono file of 100 frames. */
const good = (): Uint8Array => k.audio.encodeWav({ data: Float32Array.from(seeded(100, 5)), channels: 1, frames: 100, sampleRate: 16000 });

/** loadAudio on these bytes written to `name` must throw an error naming the file and matching `why`. */
function rejects(name: string, bytes: Uint8Array | string, why: RegExp): void {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  assert.throws(() => k.loadAudio(path), (e: Error) => {
    assert.ok(e.message.startsWith(`${path}:`), `error names the file: ${e.message}`);
    assert.match(e.message, why);
    return true;
  });
}

test('truncated data chunk, chunk size past the end, huge declared size', () => {
  const b = good();
  rejects('truncated.wav', b.subarray(0, b.length - 51), /chunk 'data' at byte 36 declares 200 bytes but only 149 remain/);
  const past = b.slice();
  new DataView(past.buffer).setUint32(16, 1000, true); // fmt chunk claims 1000 bytes
  rejects('fmt_past_end.wav', past, /chunk 'fmt ' at byte 12 declares 1000 bytes but only \d+ remain/);
  const huge = b.slice();
  new DataView(huge.buffer).setUint32(40, 0xfffffff0, true); // data chunk claims ~4 GiB
  rejects('huge.wav', huge, /chunk 'data' at byte 36 declares 4294967280 bytes/);
});

test('zero channels, zero rate, inconsistent block align, unsupported encodings', () => {
  const z = good();
  new DataView(z.buffer).setUint16(22, 0, true);
  rejects('zero_channels.wav', z, /fmt chunk declares 0 channels/);
  const r = good();
  new DataView(r.buffer).setUint32(24, 0, true);
  rejects('zero_rate.wav', r, /sample rate of 0 Hz/);
  const ba = good();
  new DataView(ba.buffer).setUint16(32, 3, true);
  rejects('block_align.wav', ba, /block align 3 != 1 channels x 2 bytes/);
  rejects('alaw.wav', riff([['fmt ', fmtBody(1, 8000, 8, 6)], ['data', new Uint8Array(4)]]), /unsupported WAV encoding \(format tag 6, 8 bits\)/);
  rejects('pcm12.wav', riff([['fmt ', fmtBody(1, 8000, 16, 1).fill(12, 14, 15)], ['data', new Uint8Array(4)]]), /format tag 1, 12 bits/);
});

test('a text file named .wav, an empty file, no fmt, no data, data before fmt', () => {
  rejects('notes.wav', 'these are not samples\n', /not a WAV file \(no RIFF\/WAVE header; it starts with "these are no"\)/);
  rejects('empty.wav', new Uint8Array(0), /not a WAV file/);
  rejects('no_fmt.wav', riff([['data', new Uint8Array(4)]]), /data chunk at byte 12 comes before any fmt chunk/);
  rejects('no_data.wav', riff([['fmt ', fmtBody(1, 8000, 16)]]), /no data chunk in 36 bytes/);
  rejects('short_fmt.wav', riff([['fmt ', new Uint8Array(10)], ['data', new Uint8Array(4)]]), /fmt chunk of 10 bytes is too short/);
});

test('every prefix and seeded header corruptions: decoded or the reader\'s own error, never out of bounds', () => {
  const b = good();
  const check = (bytes: Uint8Array, what: string): void => {
    try {
      const a = k.audio.parseWav(bytes, 'fuzz.wav');
      assert.ok(a.data.length === a.channels * a.frames && a.frames * 2 * a.channels <= bytes.length, what);
    } catch (e) {
      assert.ok(!(e instanceof RangeError) && (e as Error).message.startsWith('fuzz.wav: '), `${what}: ${(e as Error).message}`);
    }
  };
  for (let n = 0; n <= b.length; n++) check(b.subarray(0, n), `prefix ${n}`);
  const noise = seeded(4000, 11, 0, 1);
  for (let i = 0; i < 1000; i++) {
    const c = b.slice();
    for (let j = 0; j < 3; j++) c[Math.floor(noise[i * 4 + j] * 48)] = Math.floor(noise[i * 4 + 3 - j] * 256);
    check(c, `corruption ${i}`);
  }
});
