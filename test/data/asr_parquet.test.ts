// Speech data from Parquet as 🤗 datasets writes its Audio feature: a struct {bytes, path} per row
// (WAV bytes decoded by our reader, FLAC bytes by ffmpeg, a null bytes with a relative path read
// from disk). Each decodes to exactly the samples loadAudio gives for the original file (the same
// decoder runs on the same bytes); `finetune --task asr` trains a step from such a file; bad rows
// name the file and row.
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parquetWriteFile } from 'hyparquet-writer';
import * as k from '../../src/index.js';
import { readAsrData } from '../../src/data/asr_parquet.js';
import { runCli } from '../helpers.js';
import { fixture } from '../fixtures.js';

const fx = fixture('audio');
const dir = mkdtempSync(join(tmpdir(), 'kestrel-asr-parquet-'));

/** A Parquet file with HF datasets' layout: audio STRUCT<bytes BINARY, path STRING>, text STRING. */
function writeAudioParquet(file: string, rows: { bytes: Uint8Array | null; path: string | null; text?: string | null }[], textColumn = 'text'): string {
  parquetWriteFile({
    filename: file,
    columnData: [{ name: 'audio', data: rows.map((r) => ({ bytes: r.bytes, path: r.path })) }, { name: textColumn, data: rows.map((r) => r.text ?? null) }],
    schema: [
      { name: 'root', num_children: 2 },
      { name: 'audio', num_children: 2, repetition_type: 'OPTIONAL' },
      { name: 'bytes', type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL' },
      { name: 'path', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
      { name: textColumn, type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'OPTIONAL' },
    ],
  });
  return file;
}

const clip = (name: string): string => join(fx.path, 'clips', name);
const samplesOf = (source: k.audio.AudioSource): number[] => {
  const a = k.loadAudio(source, { sampleRate: 16000, mono: true });
  const v = Array.from(a.samples.toFloat32Array());
  a.samples.dispose();
  return v;
};

test('Audio structs: WAV bytes, FLAC bytes (ffmpeg) and a path decode as the files do', { skip: fx.skip }, async () => {
  copyFileSync(clip('speech_22k_s16.wav'), join(dir, 'on_disk.wav'));
  const file = writeAudioParquet(join(dir, 'train.parquet'), [
    { bytes: readFileSync(clip('speech_16k_s16.wav')), path: 'speech_16k_s16.wav', text: 'one' },
    { bytes: readFileSync(clip('speech_16k.flac')), path: 'speech_16k.flac', text: 'two' },
    { bytes: null, path: 'on_disk.wav', text: 'three' },
  ]);
  const samples = await readAsrData(file);
  assert.deepEqual(samples.map((s) => [s.text, s.where]), [['one', `${file} row 1`], ['two', `${file} row 2`], ['three', `${file} row 3`]]);
  assert.ok(typeof samples[0].audio === 'object' && samples[0].audio.bytes instanceof Uint8Array, 'bytes stay bytes, not arrays of numbers');
  assert.deepEqual(samplesOf(samples[0].audio), samplesOf(clip('speech_16k_s16.wav')));
  assert.deepEqual(samplesOf(samples[1].audio), samplesOf(clip('speech_16k.flac')));
  assert.equal(samples[2].audio, join(dir, 'on_disk.wav'), 'a path is resolved against the Parquet file\'s folder');
});

test('the transcript may be in "sentence" (Common Voice\'s column); bad rows name file and row', { skip: fx.skip }, async () => {
  const wav = readFileSync(clip('speech_16k_s16.wav'));
  const cv = await readAsrData(writeAudioParquet(join(dir, 'cv.parquet'), [{ bytes: wav, path: null, text: 'hello' }], 'sentence'));
  assert.equal(cv[0].text, 'hello');
  const noText = writeAudioParquet(join(dir, 'no_text.parquet'), [{ bytes: wav, path: null, text: 'a' }, { bytes: wav, path: null, text: null }]);
  await assert.rejects(readAsrData(noText), new RegExp(`no_text\\.parquet row 2: a row needs an "audio" column and a string transcript in one of "text", "sentence", "transcription"`));
  const noAudio = writeAudioParquet(join(dir, 'no_audio.parquet'), [{ bytes: null, path: null, text: 'a' }]);
  await assert.rejects(readAsrData(noAudio), /no_audio\.parquet row 1: column "audio" must be a path or a 🤗 datasets Audio struct \{bytes, path\}/);
  const missing = writeAudioParquet(join(dir, 'missing.parquet'), [{ bytes: null, path: 'gone.wav', text: 'a' }]);
  await assert.rejects(readAsrData(missing), /missing\.parquet row 1: audio file .*gone\.wav not found/);
  const notAudio = await readAsrData(writeAudioParquet(join(dir, 'text_bytes.parquet'), [{ bytes: new TextEncoder().encode('just some text, not audio'), path: 'notes.txt', text: 'a' }]));
  assert.throws(() => samplesOf(notAudio[0].audio), /text_bytes\.parquet row 1 \(notes\.txt\): .*not an audio file/);
});

test('finetune --task asr trains from a Parquet file', { skip: fx.skip }, () => {
  const wav = readFileSync(clip('speech_16k_s16.wav'));
  const file = writeAudioParquet(join(dir, 'cli.parquet'), [{ bytes: wav, path: 'a.wav', text: 'the quick brown fox' }, { bytes: readFileSync(clip('speech_16k.flac')), path: 'b.flac', text: 'the quick brown fox' }]);
  const out = join(dir, 'run');
  const r = runCli(['finetune', '--task', 'asr', '--model', join(fx.path, 'models', 'whisper-tiny-random'), '--data', file, '--output', out, '--full', '--max-steps', '1', '--batch-size', '2', '--eval-fraction', '0', '--quiet']);
  assert.equal(r.status, 0, r.stderr);
  const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss: number });
  assert.equal(lines.length, 1);
  assert.equal(lines[0].step, 1);
  assert.ok(lines[0].loss > 1 && Number.isFinite(lines[0].loss), `the random model's first loss ${lines[0].loss}`);
});
