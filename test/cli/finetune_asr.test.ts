// `kestrel finetune --task asr` end to end on the tiny random Whisper: --full writes metrics.jsonl
// (a loss per step, WER/CER before and after) and a folder that loads back; the default (LoRA)
// writes a PEFT adapter. Learning itself is tested in test/train/whisper_asr.test.ts.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadWhisper } from '../../src/models/whisper.js';
import { runCli } from '../helpers.js';
import { fixture } from '../fixtures.js';

const fx = fixture('audio');

test('finetune --task asr: --full saves a loadable folder and metrics; LoRA saves an adapter', { skip: fx.skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-asr-cli-'));
  const manifest = join(dir, 'train.jsonl');
  const clip = join(fx.path, 'clips', 'speech_16k_s16.wav');
  writeFileSync(manifest, [JSON.stringify({ audio: clip, text: 'the quick brown fox' }), JSON.stringify({ audio: clip, text: 'the quick brown fox' })].join('\n') + '\n');
  const model = join(fx.path, 'models', 'whisper-tiny-random');
  const full = join(dir, 'full');
  const r = runCli(['finetune', '--task', 'asr', '--model', model, '--data', manifest, '--output', full, '--full', '--max-steps', '2', '--batch-size', '1', '--eval-fraction', '0.5', '--quiet']);
  assert.equal(r.status, 0, r.stderr);
  const lines = readFileSync(join(full, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  assert.deepEqual(lines.map((l) => [l.step, 'loss' in l ? 'loss' : 'eval']), [[0, 'eval'], [1, 'loss'], [2, 'loss'], [2, 'eval']]);
  assert.ok(lines.every((l) => Object.values(l).every(Number.isFinite)));
  loadWhisper(full).dispose();
  assert.ok(existsSync(join(full, 'vocab.json')) && existsSync(join(full, 'generation_config.json')));
  const adapter = join(dir, 'adapter');
  const l = runCli(['finetune', '--task', 'asr', '--model', model, '--data', manifest, '--output', adapter, '--max-steps', '1', '--batch-size', '1', '--lora-r', '4', '--quiet']);
  assert.equal(l.status, 0, l.stderr);
  assert.ok(existsSync(join(adapter, 'adapter_model.safetensors')) && existsSync(join(adapter, 'adapter_config.json')));
  assert.match(runCli(['finetune', '--task', 'vqa', '--model', model]).stderr, /--task must be asr \(speech recognition\) or tts \(text to speech\)/);
});
