// `kestrel ppo` end to end on the tiny byte-tokenizer model: with --lora it writes metrics.jsonl
// under the logged names, checkpoints, the actor's PEFT adapter and a critic folder that loads back
// as a LlamaForSequenceClassification, and continues from --resume latest; without adapters the
// reference is a second copy of the actor and the whole actor is saved; missing or wrong models
// are named errors.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { loadPretrained, savePretrained } from '../../src/models/load.js';
import { decoderConfig } from '../../src/models/registry.js';
import { DecoderForSequenceClassification } from '../../src/models/seq_cls.js';
import { runCli } from '../helpers.js';
import { TINY_PREF, tinyPolicy, tinyPreferenceDir } from '../preference/tiny_preference.js';

const dir = tinyPreferenceDir(1);
const policy = tinyPolicy();
savePretrained(dir, { model: policy, hfConfig: TINY_PREF });
policy.dispose();
// a reward model folder as kestrel rm saves one (random weights: this test is about the command, test/rl/ppo_train.test.ts about learning)
const rmDir = tinyPreferenceDir(1);
const rmConfig = { ...TINY_PREF, architectures: ['LlamaForSequenceClassification'], num_labels: 1, id2label: { 0: 'LABEL_0' }, label2id: { LABEL_0: 0 } };
const rm = new DecoderForSequenceClassification(decoderConfig(rmConfig, 'rm config'), 1, { generator: new k.Generator(4) });
savePretrained(rmDir, { model: rm, hfConfig: rmConfig });
rm.dispose();
writeFileSync(join(dir, 'prompts.jsonl'), ['ab:', 'cd:', 'ef:', 'gh:'].map((prompt) => JSON.stringify({ prompt })).join('\n') + '\n');
const jsonl = (f: string): Record<string, number>[] => readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const common = (out: string): string[] => ['--actor-model', dir, '--critic-model', rmDir, '--reward-model', rmDir, '--data', join(dir, 'prompts.jsonl'), '--output', out,
  '--max-new-tokens', '3', '--batch-size', '4', '--ppo-epochs', '2', '--num-mini-batches', '2', '--lr', '1e-3', '--quiet'];

test('kestrel ppo --lora: metrics, checkpoints, actor adapter, critic folder, resume', async () => {
  const out = join(dir, 'ppo');
  const r = runCli(['ppo', ...common(out), '--lora', '--lora-r', '4', '--max-steps', '2', '--save-every', '2']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^ppo: trained to step 2, reward [-\d.]+ \(first step\) -> [-\d.]+ \(last\); actor adapter saved/);
  const m = jsonl(join(out, 'metrics.jsonl'));
  assert.equal(m.length, 2);
  for (const key of ['reward', 'kl', 'entropy', 'clipfrac', 'value_clipfrac', 'value_loss', 'policy_loss', 'approxkl', 'non_score_reward', 'rlhf_reward', 'completion_length'])
    assert.ok(Number.isFinite(m[1][key]), `ppo logs ${key}`);
  assert.equal(m[0].kl, 0, 'first rollout: the actor (LoRA B = 0) equals its reference');
  assert.ok(existsSync(join(out, 'checkpoint-2')) && existsSync(join(out, 'adapter_model.safetensors')));
  const critic = await loadPretrained(join(out, 'critic'));
  assert.ok(critic.model instanceof DecoderForSequenceClassification, 'the critic saves as a loadable *ForSequenceClassification (adapters merged)');
  critic.model.dispose();
  const resumed = runCli(['ppo', ...common(out), '--lora', '--lora-r', '4', '--max-steps', '3', '--resume', 'latest']);
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.deepEqual(jsonl(join(out, 'metrics.jsonl')).map((x) => x.step), [1, 2, 3], 'the run continues at step 3');
});

test('kestrel ppo without adapters: a frozen copy of the actor is the reference; the whole actor is saved', () => {
  const out = join(dir, 'ppo-full');
  const r = runCli(['ppo', ...common(out), '--max-steps', '1']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(jsonl(join(out, 'metrics.jsonl'))[0].kl, 0, 'before the first update the actor equals its copy');
  assert.ok(existsSync(join(out, 'model.safetensors')) && existsSync(join(out, 'critic', 'model.safetensors')));
});

test('kestrel ppo: missing critic, and a causal LM given as the reward model, are named errors', () => {
  const noCritic = runCli(['ppo', '--actor-model', dir, '--reward-model', rmDir, '--data', join(dir, 'prompts.jsonl'), '--output', join(dir, 'x'), '--quiet']);
  assert.equal(noCritic.status, 1);
  assert.match(noCritic.stderr, /--critic-model DIR is required/);
  const lmAsRm = runCli(['ppo', '--actor-model', dir, '--critic-model', rmDir, '--reward-model', dir, '--data', join(dir, 'prompts.jsonl'), '--output', join(dir, 'y'), '--quiet']);
  assert.equal(lmAsRm.status, 1);
  assert.match(lmAsRm.stderr, /--reward-model .*needs a trained reward model/);
});
