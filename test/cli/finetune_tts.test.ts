// `kestrel finetune --task tts` and `kestrel speak` end to end on espeak-ng words, the tiny EnCodec
// and a tiny random Llama, with the default LoRA (plus trainable embedding and head rows): the
// loss in metrics.jsonl falls, the folder carries kestrel_tts, the codec cache is filled once (a
// second run reuses it), and speak writes a 24 kHz WAV that reads back with a whole number of
// codec frames. Learning to reproduce codes is tested in test/train/tts.test.ts.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadAudio } from '../../src/audio/load.js';
import { runCli } from '../helpers.js';
import { fixture } from '../fixtures.js';
import { makeSpeech, makeTinyLm } from '../train/tts_helpers.js';

const codecFx = fixture('audio', 'models', 'encodec-tiny-random');
const whisperFx = fixture('audio', 'models', 'whisper-tiny-random');

test('finetune --task tts (LoRA) then speak writes a WAV that reads back', { skip: codecFx.skip || whisperFx.skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-tts-cli-'));
  const manifest = makeSpeech(join(dir, 'speech'));
  const lm = makeTinyLm(join(dir, 'lm'), whisperFx.path);
  const out = join(dir, 'run');
  const args = ['finetune', '--task', 'tts', '--model', lm, '--codec', codecFx.path, '--data', manifest, '--output', out, '--max-steps', '40', '--batch-size', '3', '--lora-r', '8', '--quiet'];
  const r = runCli(args);
  assert.equal(r.status, 0, r.stderr);
  const losses = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { loss?: number }).loss).filter((l): l is number => l !== undefined);
  assert.equal(losses.length, 40);
  assert.ok(losses[39] < 0.6 * losses[0], `LoRA loss should fall: ${losses[0]} -> ${losses[39]}`);
  const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { vocab_size: number; kestrel_tts: Record<string, number> };
  assert.equal(config.vocab_size, 1015 + 3 * 64 + 2);
  assert.deepEqual(config.kestrel_tts, { offset: 1015, codebooks: 3, codebook_size: 64, bandwidth: 1.5, sampling_rate: 24000 });
  const cache = join(out, 'codec_cache');
  assert.equal(readdirSync(cache).length, 3, 'one cache entry per clip');
  const stamps = readdirSync(cache).map((f) => statSync(join(cache, f)).mtimeMs);
  // training further in the same folder reuses the cached codes
  const again = runCli(['finetune', '--task', 'tts', '--model', out, '--codec', codecFx.path, '--data', manifest, '--output', out, '--max-steps', '1', '--full', '--quiet']);
  assert.equal(again.status, 0, again.stderr);
  assert.deepEqual(readdirSync(cache).map((f) => statSync(join(cache, f)).mtimeMs), stamps);
  const wav = join(dir, 'yes.wav');
  const s = runCli(['speak', '--model', out, '--codec', codecFx.path, 'yes', '--output', wav, '--max-seconds', '1']);
  assert.equal(s.status, 0, s.stderr);
  const audio = loadAudio(wav);
  assert.equal(audio.sampleRate, 24000);
  assert.equal(audio.samples.shape[0], 1);
  assert.ok(audio.samples.shape[1] > 0 && audio.samples.shape[1] % 320 === 0, `${audio.samples.shape[1]} samples are whole codec frames`);
  audio.samples.dispose();
});

test('speak and finetune --task tts name what is missing', { skip: codecFx.skip }, () => {
  const r = runCli(['speak', '--model', codecFx.path, '--codec', codecFx.path, 'hi']);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /--output is required/);
  const f = runCli(['finetune', '--task', 'tts', '--model', 'x', '--data', 'y', '--output', 'z']);
  assert.match(f.stderr, /--codec is required for --task tts/);
});
