// kestrel embed-train --resume and --dtype bf16, run as a user runs them: a run resumed from its
// step-N checkpoint ends with the same bytes as the run that went through without stopping (the
// Trainer restores weights, optimizer moments, data position and RNG), and a bf16 LoRA run saves a
// float32 model equal to the float32 base with its adapter applied.
import assert from 'node:assert/strict';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { assertClose, runCli } from '../helpers.js';
import { CAPITALS, COUNTRIES, PASSAGE, TRAIN_QUERIES, tinyBertFolder } from '../embed/tiny_embedder.js';

const E = k.embeddings;
const metricLines = (dir: string): { step: number; loss: number }[] =>
  readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss: number });

/** A tiny BERT folder and its (query, passage) training rows. */
function setup(prefix: string): { dir: string; data: string } {
  const dir = tinyBertFolder(prefix);
  const rows = TRAIN_QUERIES.flatMap((q) => COUNTRIES.map((c, i) => ({ anchor: q(c), positive: PASSAGE(CAPITALS[i]) })));
  const data = join(dir, 'train.jsonl');
  writeFileSync(data, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
  return { dir, data };
}

/** Trains to maxSteps in `full`; then trains `resumed` from a copy of full's checkpoint-<at>; both must end identical. */
function trainAndResume(dir: string, data: string, flags: string[], maxSteps: number, at: number): { full: string; resumed: string } {
  const [full, resumed] = [join(dir, 'full'), join(dir, 'resumed')];
  const args = (out: string): string[] => ['embed-train', '--model', dir, '--data', data, '--output', out, '--batch-size', '8', '--max-steps', String(maxSteps), '--save-every', String(at), '--lr', '1e-2', ...flags];
  const a = runCli([...args(full), '--quiet']);
  assert.equal(a.status, 0, a.stderr);
  // what an interrupted run leaves: its checkpoint at step `at` (the Trainer saves the same state on Ctrl-C)
  cpSync(join(full, `checkpoint-${at}`), join(resumed, `checkpoint-${at}`), { recursive: true });
  const b = runCli([...args(resumed), '--resume', 'latest', '--quiet']);
  assert.equal(b.status, 0, b.stderr);
  assert.deepEqual(metricLines(resumed).map((m) => m.step), Array.from({ length: maxSteps - at }, (_, i) => at + 1 + i), 'the resumed run logs only the steps after the checkpoint');
  assert.deepEqual(metricLines(resumed).map((m) => m.loss), metricLines(full).slice(at).map((m) => m.loss), 'the resumed steps have the uninterrupted run\'s losses');
  return { full, resumed };
}

test('embed-train --resume latest: a run resumed from checkpoint-3 saves the same bytes as the uninterrupted 6-step run (learnable scale included)', () => {
  const { dir, data } = setup('kestrel-embed-resume-');
  const { full, resumed } = trainAndResume(dir, data, ['--learnable-scale'], 6, 3);
  assert.ok(readFileSync(join(resumed, 'model.safetensors')).equals(readFileSync(join(full, 'model.safetensors'))), 'model.safetensors differs after the resume');
  const bad = runCli(['embed-train', '--model', dir, '--data', data, '--output', join(dir, 'x'), '--resume', join(dir, 'nowhere'), '--max-steps', '1', '--quiet']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /nowhere/);
});

test('embed-train --lora --dtype bf16: resumes exactly, and saves the adapter merged into the float32 base', async () => {
  const { dir, data } = setup('kestrel-embed-bf16-');
  const flags = ['--lora', '--lora-r', '4', '--dtype', 'bf16'];
  const { full, resumed } = trainAndResume(dir, data, flags, 4, 2);
  for (const f of ['adapter/adapter_model.safetensors', 'model.safetensors'])
    assert.ok(readFileSync(join(resumed, f)).equals(readFileSync(join(full, f))), `${f} differs after the resume`);
  // the merged model is float32 throughout and embeds as the float32 base with the adapter applied unmerged
  using saved = new SafetensorsFile(join(full, 'model.safetensors'));
  assert.deepEqual(saved.names.filter((n) => saved.info(n).dtype !== 'float32'), [], 'every saved tensor is float32');
  const merged = await E.loadEmbedder(full);
  const adapted = await E.loadEmbedder(dir, { adapter: join(full, 'adapter') });
  const texts = ['what is the capital of france', 'paris is a large old city'];
  const [m, a] = [merged, adapted].map((x) => E.encode(x, texts));
  m.forEach((v, i) => assertClose(v, a[i], { atol: 1e-5, rtol: 1e-4, what: `text ${i}: merged vs base + adapter` }));
  merged.dispose();
  adapted.dispose();
  // the same run in fp32 trains a different adapter: bf16 really changed the arithmetic
  const fp32 = join(dir, 'fp32');
  const r = runCli(['embed-train', '--model', dir, '--data', data, '--output', fp32, '--batch-size', '8', '--max-steps', '4', '--lr', '1e-2', '--lora', '--lora-r', '4']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /LoRA r 4 alpha 4 on \d+ layers of the backbone \(frozen base in fp32\)/);
  assert.ok(!readFileSync(join(fp32, 'adapter', 'adapter_model.safetensors')).equals(readFileSync(join(full, 'adapter', 'adapter_model.safetensors'))), 'bf16 and fp32 runs trained identical adapters');
  const bad = runCli(['embed-train', '--model', dir, '--data', data, '--output', join(dir, 'c'), '--dtype', 'fp16']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /--dtype must be fp32 or bf16, got 'fp16'/);
});
