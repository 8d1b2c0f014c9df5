// `kestrel demo` (npm start's job) at a reduced step count: the JSON summary, the model learns
// the held-out tasks (exact-match accuracy rises from zero), and the saved folder loads in
// `kestrel generate`.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCli } from '../helpers.js';

test('demo: accuracy rises and the saved model generates', () => {
  const r = runCli(['demo', '--steps', '150', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
  for (const f of ['accuracy_before', 'accuracy_after', 'model_dir', 'seconds']) assert.ok(f in s, f);
  assert.ok(s.accuracy_after >= s.accuracy_before + 0.1, `accuracy ${s.accuracy_before} -> ${s.accuracy_after}`);
  const g = runCli(['generate', '--model', s.model_dir, '--prompt', 'What is 2+2?', '--max-new-tokens', '4', '--json']);
  assert.equal(g.status, 0, g.stderr);
  assert.equal(JSON.parse(g.stdout.trim()).generated_ids.length > 0, true);
});

test('demo --finetune qlora: adapters on the NF4-quantized pretrained model learn the chat task', () => {
  const r = runCli(['demo', '--steps', '150', '--finetune', 'qlora', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
  assert.equal(s.finetune, 'qlora');
  // the base is frozen in 4 bits: every gain over the pretrained model is the adapters' doing
  assert.ok(s.accuracy_after >= s.accuracy_pretrained + 0.1, `accuracy ${s.accuracy_pretrained} -> ${s.accuracy_after}`);
  const g = runCli(['generate', '--model', s.model_dir, '--adapter', s.adapter_dir, '--prompt', 'What is 2+2?', '--max-new-tokens', '4', '--json']);
  assert.equal(g.status, 0, g.stderr);
});
