// Whisper ASR fine-tuning pieces: labels equal transformers' tokenizer with the en/transcribe
// prefix (minus <|startoftranscript|>, which the model prepends); the tiny random Whisper learns
// one utterance (loss from ~8 to a small fraction, then its greedy transcription is the text: WER
// 0, from above 1 before); SpecAugment zeroes bounded spans reproducibly; manifest errors name
// file:line.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { readAsrManifest } from '../../src/data/asr_manifest.js';
import { readJson } from '../../src/io/hf_folder.js';
import { loadWhisper } from '../../src/models/whisper.js';
import { whisperGenerationConfig } from '../../src/models/whisper_generate.js';
import { asrLabels, disposeExamples, evaluateAsr, prepareAsrExamples, specAugment, trainAsr } from '../../src/train/whisper_asr.js';
import { fixture } from '../fixtures.js';

const fx = fixture('audio');
const MODEL = (): string => join(fx.path, 'models', 'whisper-tiny-random');
const PROMPT = { language: 'en', task: 'transcribe' as const };

test('labels: <|en|> <|transcribe|> <|notimestamps|> text <|endoftext|>, as transformers\' tokenizer', { skip: fx.skip }, async () => {
  const tokenizer = await k.loadTokenizer(MODEL());
  const g = whisperGenerationConfig(readJson(join(MODEL(), 'generation_config.json')), 'generation_config.json');
  const cases = (readJson(join(MODEL(), 'goldens.json')) as { tokenizer: { cases: { call: string; ids: number[] }[] } }).tokenizer.cases;
  const want = cases.find((c) => c.call.includes("language='en', task='transcribe'"))!.ids;
  assert.deepEqual(asrLabels(tokenizer, g, 'the quick brown fox jumps over the lazy dog', PROMPT), want.slice(1));
});

test('the tiny Whisper learns an utterance: loss falls, the greedy transcription becomes the text', { skip: fx.skip }, async () => {
  const model = loadWhisper(MODEL());
  const tokenizer = await k.loadTokenizer(MODEL());
  const g = whisperGenerationConfig(readJson(join(MODEL(), 'generation_config.json')), 'generation_config.json');
  const examples = prepareAsrExamples([{ audio: join(fx.path, 'clips', 'speech_16k_s16.wav'), text: 'the quick brown fox', where: 'test:1' }], model, tokenizer, g, PROMPT);
  const before = evaluateAsr(model, tokenizer, g, examples, PROMPT);
  assert.ok(before.wer > 1, `the random model's WER ${before.wer}`);
  const losses = trainAsr(model, examples, { steps: 20, lr: 3e-3, batchSize: 1 });
  assert.ok(losses[0] > 5 && losses[19] < 0.05 * losses[0], `loss ${losses[0]} -> ${losses[19]}`);
  const after = evaluateAsr(model, tokenizer, g, examples, PROMPT);
  assert.deepEqual([after.wer, after.cer, after.hypotheses], [0, 0, [' the quick brown fox']]);
  disposeExamples(examples);
  model.dispose();
});

test('specAugment zeroes at most the configured spans, the same ones for the same seed', () => {
  const nMels = 8;
  const frames = 50;
  const x = new Float32Array(nMels * frames).fill(1);
  const draws = (seed: number): (() => number) => {
    let s = seed;
    return () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  };
  const a = specAugment(x, nMels, { timeMasks: 2, timeWidth: 5, freqMasks: 1, freqWidth: 2 }, draws(3));
  const b = specAugment(x, nMels, { timeMasks: 2, timeWidth: 5, freqMasks: 1, freqWidth: 2 }, draws(3));
  assert.deepEqual(a, b);
  const zeros = a.reduce((n, v) => n + (v === 0 ? 1 : 0), 0);
  // at most 2 x 5 frames over all bins plus 2 bins over all frames
  assert.ok(zeros <= 2 * 5 * nMels + 2 * frames, `${zeros} zeros`);
  assert.equal(x.every((v) => v === 1), true, 'the input is not modified');
});

test('manifest errors name file:line', { skip: fx.skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-asr-manifest-'));
  const wav = join(fx.path, 'clips', 'speech_16k_s16.wav');
  const write = (lines: string[]): string => {
    const p = join(dir, `m${Math.random().toString(36).slice(2)}.jsonl`);
    writeFileSync(p, lines.join('\n') + '\n');
    return p;
  };
  const ok = await readAsrManifest(write([JSON.stringify({ audio: wav, text: 'a' }), '', JSON.stringify({ audio: wav, text: 'b' })]));
  assert.deepEqual(ok.map((r) => r.text), ['a', 'b']);
  const bad = write([JSON.stringify({ audio: wav, text: 'a' }), '{not json']);
  await assert.rejects(readAsrManifest(bad), new RegExp(`${bad.replace(/[.]/g, '\\.')}:2: not JSON`));
  await assert.rejects(readAsrManifest(write([JSON.stringify({ audio: wav })])), /:1: a record needs string fields "audio" \(a file path\) and "text"/);
  await assert.rejects(readAsrManifest(write([JSON.stringify({ audio: 'missing.wav', text: 'x' })])), /:1: audio file .*missing\.wav not found/);
});
