// `kestrel transcribe` on the tiny random Whisper: the FLAC clip (decoded by ffmpeg, resampled
// and featurised by Kestrel) gives transformers' greedy tokens and text (generate_ids after the
// 4-token prompt, and its decoding); bad flags are named. (Windows of long audio:
// test/models/whisper_generate.test.ts.)
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli } from '../helpers.js';
import { fixture } from '../fixtures.js';

const fx = fixture('audio');
const noFfmpeg = spawnSync('ffmpeg', ['-version']).status === 0 ? false : 'ffmpeg is not installed';
const MODEL = (): string => join(fx.path, 'models', 'whisper-tiny-random');
// generate_ids of goldens.json after the prompt <|startoftranscript|><|en|><|transcribe|><|notimestamps|>
const GOLDEN_TOKENS = [844, 350, 350, 844, 350, 358, 650, 350, 844, 350, 844, 350];

test('transcribe --json: transformers\' greedy tokens and text for the FLAC clip', { skip: fx.skip || noFfmpeg }, () => {
  const r = runCli(['transcribe', '--model', MODEL(), join(fx.path, 'clips', 'speech_16k.flac'), '--max-new-tokens', '12', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const line = JSON.parse(r.stdout.trim()) as { file: string; text: string; tokens: number[] };
  assert.deepEqual(line.tokens, GOLDEN_TOKENS);
  assert.equal(line.text, 'ix P Pix Pnd---- Pix Pix P');
  assert.ok(line.file.endsWith('speech_16k.flac'));
});

test('transcribe: a bad task and a missing file list are named', { skip: fx.skip }, () => {
  const r = runCli(['transcribe', '--model', MODEL(), 'x.wav', '--task', 'summarize']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /kestrel transcribe: --task must be transcribe or translate, got 'summarize'/);
  assert.match(runCli(['transcribe', '--model', MODEL()]).stderr, /give at least one audio file/);
});
