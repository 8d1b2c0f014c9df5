// `kestrel dpo|orpo|simpo|kto|rm` end to end on the tiny byte-tokenizer model: a LoRA DPO run writes
// metrics.jsonl with TRL's metric names, eval.jsonl, checkpoints and a PEFT adapter, and resumes;
// rm saves a LlamaForSequenceClassification folder that loads back; a bad record names file:line.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadPretrained, savePretrained } from '../../src/models/load.js';
import { DecoderForSequenceClassification } from '../../src/models/seq_cls.js';
import { runCli } from '../helpers.js';
import { TINY_PREF, tinyPolicy, tinyPreferenceDir } from '../preference/tiny_preference.js';

const dir = tinyPreferenceDir(40);
const policy = tinyPolicy();
savePretrained(dir, { model: policy, hfConfig: TINY_PREF });
policy.dispose();
const jsonl = (f: string): Record<string, number>[] => readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l));

test('kestrel dpo --lora: metrics under TRL names, eval, checkpoints, adapter, resume', () => {
  const out = join(dir, 'dpo');
  const common = ['--model', dir, '--data', join(dir, 'pairs.jsonl'), '--output', out, '--lora', '--lora-r', '4', '--batch-size', '8', '--lr', '1e-2', '--eval-fraction', '0.2', '--eval-every', '3', '--save-every', '3', '--quiet'];
  const r = runCli(['dpo', ...common, '--max-steps', '3']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^dpo: trained to step 3, loss [\d.]+ rewards\/margins [-\d.]+ rewards\/accuracies [\d.]+; eval loss/);
  const m = jsonl(join(out, 'metrics.jsonl'));
  assert.equal(m.length, 3);
  for (const name of ['loss', 'rewards/chosen', 'rewards/rejected', 'rewards/margins', 'rewards/accuracies', 'logps/chosen', 'logps/rejected']) assert.ok(name in m[0], `metrics.jsonl has ${name}`);
  assert.equal(m[0]['rewards/margins'], 0, 'first step: policy (LoRA B = 0) equals the reference');
  assert.ok('eval_rewards/accuracies' in jsonl(join(out, 'eval.jsonl'))[0]);
  assert.ok(existsSync(join(out, 'checkpoint-3')) && existsSync(join(out, 'adapter_model.safetensors')) && existsSync(join(out, 'adapter_config.json')));
  const again = runCli(['dpo', ...common, '--max-steps', '5', '--resume', 'latest']);
  assert.equal(again.status, 0, again.stderr);
  assert.deepEqual(jsonl(join(out, 'metrics.jsonl')).map((l) => l.step), [1, 2, 3, 4, 5], 'resumed at step 4');
});

test('kestrel rm (full and --lora): a causal LM folder becomes a LlamaForSequenceClassification reward model', async () => {
  const out = join(dir, 'rm');
  for (const lora of [[], ['--lora', '--lora-r', '4']]) {
    const r = runCli(['rm', '--model', dir, '--data', join(dir, 'pairs.jsonl'), '--output', out, ...lora, '--batch-size', '8', '--max-steps', '4', '--lr', '1e-2', '--eval-fraction', '0.2', '--quiet']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^rm: trained to step 4, loss [\\d.]+ accuracy [\\d.]+ rewards/margins .*; ${lora.length ? 'merged model' : 'model'} saved`));
    const { model, hfConfig } = await loadPretrained(out);
    assert.ok(model instanceof DecoderForSequenceClassification, 'with --lora too: the adapters are merged into a whole reward model');
    assert.deepEqual(hfConfig.architectures, ['LlamaForSequenceClassification']);
    assert.equal(model.numLabels, 1);
    assert.equal(hfConfig.pad_token_id, 256, 'the score is read before the first pad: the config keeps the pad id used');
    model.dispose();
  }
});

for (const [method, data, keys] of [
  ['orpo', 'pairs.jsonl', ['nll_loss', 'log_odds_ratio', 'log_odds_chosen', 'rewards/accuracies']],
  ['simpo', 'pairs.jsonl', ['rewards/margins', 'logps/chosen']],
  ['kto', 'kto.jsonl', ['kl', 'rewards/chosen', 'rewards/rejected']],
] as const) {
  test(`kestrel ${method} runs and logs ${keys.join(', ')}`, () => {
    const out = join(dir, method);
    const r = runCli([method, '--model', dir, '--data', join(dir, data), '--output', out, '--lora', '--lora-r', '4', '--batch-size', '8', '--max-steps', '2', '--quiet']);
    assert.equal(r.status, 0, r.stderr);
    const m = jsonl(join(out, 'metrics.jsonl'));
    assert.equal(m.length, 2);
    for (const key of keys) assert.ok(Number.isFinite(m[1][key]), `${method} logs ${key}: ${JSON.stringify(m[1])}`);
  });
}

test('a bad preference record stops the run with file:line and the field', () => {
  const bad = join(dir, 'bad.jsonl');
  writeFileSync(bad, `${JSON.stringify({ prompt: 'a:', chosen: ' e', rejected: ' b' })}\n${JSON.stringify({ prompt: 'a:', chosen: ' e' })}\n`);
  const r = runCli(['orpo', '--model', dir, '--data', bad, '--output', join(dir, 'orpo'), '--max-steps', '1', '--quiet']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /bad\.jsonl:2: a preference record needs "chosen" and "rejected"/);
});

test('kestrel grpo: a rewards module and a built-in reward, logged per function', () => {
  const out = join(dir, 'grpo');
  writeFileSync(join(dir, 'prompts.jsonl'), ['ab:', 'cd:', 'ef:', 'gh:'].map((prompt) => JSON.stringify({ prompt, answer: 'aaa' })).join('\n') + '\n');
  writeFileSync(join(dir, 'rewards.mjs'), 'export function lowercase({ completions }) { return completions.map((c) => [...c].filter((ch) => ch >= "a" && ch <= "z").length / Math.max(c.length, 1)); }\n');
  const r = runCli(['grpo', '--model', dir, '--data', join(dir, 'prompts.jsonl'), '--rewards', join(dir, 'rewards.mjs'), '--reward', 'correctness', '--output', out,
    '--lora', '--lora-r', '4', '--beta', '0.04', '--num-generations', '4', '--max-new-tokens', '4', '--batch-size', '2', '--max-steps', '2', '--quiet']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^grpo: trained to step 2, reward [-\d.]+ \(first step\) -> [-\d.]+ \(last\); adapter saved/);
  const m = jsonl(join(out, 'metrics.jsonl'));
  for (const key of ['reward', 'reward_std', 'completion_length', 'rewards/lowercase', 'rewards/correctness', 'kl', 'clip_ratio/region_mean']) assert.ok(Number.isFinite(m[1][key]), `grpo logs ${key}`);
  assert.ok(existsSync(join(out, 'adapter_model.safetensors')));
  const none = runCli(['grpo', '--model', dir, '--data', join(dir, 'prompts.jsonl'), '--output', join(dir, 'grpo2'), '--quiet']);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /needs reward functions: --rewards FILE/);
});
