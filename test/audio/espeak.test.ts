// espeak-ng test speech: each voice gives a 22050 Hz mono WAV of speech (not silence) that our
// reader loads, different voices give different audio for the same text, the corpus grammar gives
// 336 distinct sentences, the manifest lists every clip, and a missing binary is named.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { corpusSentence, espeakCorpus, espeakToWav } from '../../src/audio/espeak.js';
import { loadAudio } from '../../src/audio/load.js';
import { withEnv } from '../helpers.js';

const rms = (x: Float32Array): number => Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);

test('espeakCorpus speaks sentences in several voices into WAVs and a manifest', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-espeak-'));
  const manifest = espeakCorpus(dir, { count: 4, voices: ['en', 'en+f3'] });
  const lines = readFileSync(manifest, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { text: string; audio: string });
  assert.deepEqual(lines.map((l) => l.text), [0, 1, 2, 3].map(corpusSentence));
  const clips = lines.map((l) => loadAudio(join(dir, l.audio)));
  for (const c of clips) {
    assert.equal(c.sampleRate, 22050);
    assert.equal(c.samples.shape[0], 1);
    assert.ok(c.samples.shape[1] > 0.5 * 22050, 'a short sentence lasts over half a second');
    assert.ok(rms(c.samples.toFloat32Array()) > 0.01, 'speech, not silence');
  }
  // the same text in two voices differs
  espeakToWav('hello', join(dir, 'a.wav'), { voice: 'en' });
  espeakToWav('hello', join(dir, 'b.wav'), { voice: 'en+f3' });
  assert.notDeepEqual(readFileSync(join(dir, 'a.wav')), readFileSync(join(dir, 'b.wav')));
  assert.equal(new Set(Array.from({ length: 336 }, (_, i) => corpusSentence(i))).size, 336);
});

test('espeakToWav names a missing espeak-ng', () => {
  withEnv('KESTREL_ESPEAK', '/nonexistent/espeak-ng', () => {
    assert.throws(() => espeakToWav('hi', join(tmpdir(), 'x.wav')), /'\/nonexistent\/espeak-ng' is not installed \(apt-get install espeak-ng/);
  });
});
