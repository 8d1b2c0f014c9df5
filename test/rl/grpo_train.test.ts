// GRPO end to end on the tiny byte-tokenizer model with LoRA or QLoRA (and the LM head trained in full, as
// modules_to_save: a frozen random head makes the letters' share slow to move): rollouts sampled with the KV cache,
// a TypeScript reward function (the share of lowercase letters in the completion), group-normalised
// advantages, the clipped objective with a KL term to the base (adapters disabled): the mean reward
// rises within a few seconds, and a resumed run draws the same rollouts and reaches the same weights.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { loadTokenizer } from '../../src/tokenizer/index.js';
import { Trainer } from '../../src/train/trainer.js';
import { grpoStep } from '../../src/rl/grpo_step.js';
import { PromptDataset } from '../../src/rl/prompts.js';
import { sampleCompletions } from '../../src/rl/rollout.js';
import { sequenceLogps } from '../../src/preference/logps.js';
import { assertClose } from '../helpers.js';
import { assertNoLeakedStorage, assertResumeExact } from './rl_checks.js';
import type { RewardFunction } from '../../src/rl/rewards.js';
import { ADAPTERS, type Adapter, addAdapters, PAD, tinyPolicy, tinyPreferenceDir } from '../preference/tiny_preference.js';

const lowercase: RewardFunction = ({ completions }) => completions.map((c) => (c.length ? [...c].filter((ch) => ch >= 'a' && ch <= 'z').length / c.length : 0));

async function setup(adapter: Adapter = 'LoRA') {
  const tok = await loadTokenizer(tinyPreferenceDir(1));
  const prompts = new PromptDataset(['ab:', 'cd:', 'ef:', 'gh:', 'ij:', 'kl:', 'mn:', 'op:'].map((text) => ({ text, ids: tok.encode(text), record: {} })), 0);
  k.manualSeed(11);
  const model = tinyPolicy(2);
  addAdapters(model, adapter, { modulesToSave: ['lm_head'] });
  const step = grpoStep(model, {
    rewards: { lowercase },
    rollout: { numGenerations: 8, maxNewTokens: 6, temperature: 1, eosTokenIds: [258], padTokenId: PAD, decode: (ids) => tok.decode(ids, { skipSpecialTokens: true }) },
    loss: { beta: 0.04 },
  });
  return { model, prompts, step };
}

for (const adapter of ADAPTERS) test(`GRPO with ${adapter} raises the mean reward of its sampled completions`, async () => {
  const { model, prompts, step } = await setup(adapter);
  const logged: Record<string, number>[] = [];
  const trainer = new Trainer({ model, data: prompts, step, batchSize: 4, maxSteps: 16, lr: 3e-2, onStep: (m) => logged.push(m.metrics!) });
  await trainer.train();
  for (const name of ['reward', 'reward_std', 'completion_length', 'frac_reward_zero_std', 'rewards/lowercase', 'entropy', 'kl', 'clip_ratio/region_mean'])
    assert.ok(Number.isFinite(logged[0][name]), `logs ${name}`);
  const avg = (xs: Record<string, number>[]) => xs.reduce((a, m) => a + m.reward, 0) / xs.length;
  const [first, last] = [avg(logged.slice(0, 4)), avg(logged.slice(-4))];
  // measured (seeded, so the same on every run): LoRA ~0.13 over steps 1-4, ~0.96 over steps 13-16; QLoRA ~0.14 -> ~0.97
  assert.ok(last > 0.5 && last > first + 0.3, `mean reward ${first.toFixed(3)} (steps 1-4) -> ${last.toFixed(3)} (steps 13-16)`);
  model.dispose();
});

test('GRPO resume: the same rollouts and weights as the uninterrupted run', async () => {
  await assertResumeExact(async () => {
    const s = await setup();
    return { ...s, dispose: () => s.model.dispose() };
  }, { batchSize: 4, lr: 3e-2, name: 'grpo' });
});

test('rollout rows: left-padded prompts of different lengths score each completion as the row alone would; entropies', async () => {
  const tok = await loadTokenizer(tinyPreferenceDir(1));
  const model = tinyPolicy(4);
  const prompts = ['a:', 'bcdef:', 'gh:'].map((text) => ({ text, ids: tok.encode(text), record: {} }));
  const r = await sampleCompletions(model, prompts, { numGenerations: 2, maxNewTokens: 5, eosTokenIds: [258], padTokenId: PAD, decode: (ids) => tok.decode(ids) });
  assert.equal(r.rows.inputIds.length, 6);
  assert.equal(r.promptWidth, 6, 'the longest prompt sets the block width');
  const batched = k.tidy(() => sequenceLogps(model, r.rows).logps.toArray() as number[]);
  r.rows.inputIds.forEach((row, i) => {
    // the same sequence without padding: its prompt, then its completion through the first eos
    const keep = row.map((_, j) => r.rows.attentionMask[i][j] === 1);
    const ids = row.filter((_, j) => keep[j]);
    const labels = r.rows.labels[i].filter((_, j) => keep[j]);
    const alone = k.tidy(() => sequenceLogps(model, { inputIds: [ids], labels: [labels], attentionMask: [ids.map(() => 1)] }).logps.item());
    assertClose([batched[i]], [alone], { atol: 1e-4, rtol: 1e-5, what: `row ${i} completion log-prob` });
    assert.equal(r.completions[i], tok.decode(labels.filter((l) => l !== -100)), 'the decoded completion is the scored one');
  });
  // the entropy GRPO logs: -sum_v p_v log p_v of each position's next-token distribution, here in float64 from the logits
  const ent = k.tidy(() => sequenceLogps(model, r.rows, { entropy: true }).tokenEntropy!.toArray() as number[][]);
  const logits = k.tidy(() => model.forward({ inputIds: k.tensor(r.rows.inputIds, { dtype: 'int64' }), attentionMask: k.tensor(r.rows.attentionMask, { dtype: 'int64' }), positionIds: k.tensor(r.rows.positionIds!, { dtype: 'int64' }) }).logits!.toArray() as number[][][]);
  const H = (l: number[]): number => {
    const m = Math.max(...l);
    const z = l.reduce((a, x) => a + Math.exp(x - m), 0);
    return -l.reduce((a, x) => a + (Math.exp(x - m) / z) * (x - m - Math.log(z)), 0);
  };
  for (const [i, t] of [[0, 5], [3, 7], [5, 9]]) assertClose([ent[i][t]], [H(logits[i][t])], { atol: 1e-5, rtol: 1e-5, what: `entropy row ${i} position ${t}` });
  model.dispose();
});

test('a GRPO step (rollout, rewards, loss, backward) leaves no storage behind', async () => {
  const s = await setup();
  const [batch] = s.prompts.batches({ batchSize: 2, shuffle: false });
  await assertNoLeakedStorage({ ...s, dispose: () => s.model.dispose() }, batch);
  s.model.dispose();
});
