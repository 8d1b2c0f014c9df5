// Each pairwise method trains the tiny model on the synthetic vowel task through the Trainer and
// improves its own held-out metric within a few seconds, with LoRA and with QLoRA (the base's
// Linears in NF4, adapters in float32): DPO (reward margin and accuracy, starting from exactly 0
// margin because the reference is the base with adapters off), ORPO (odds ratio), SimPO (margin),
// KTO (margin on unpaired data), the reward model (pairwise accuracy, LoRA + a fully trained score
// head). Resume from a checkpoint reproduces the uninterrupted run bit for bit.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { injectLora } from '../../src/lora/peft.js';
import { buildModel } from '../../src/models/registry.js';
import { DecoderForSequenceClassification } from '../../src/models/seq_cls.js';
import { loadTokenizer } from '../../src/tokenizer/index.js';
import { Trainer } from '../../src/train/trainer.js';
import { loadPreferenceData, loadUnpairedData } from '../../src/preference/load.js';
import { computeReferenceLogps } from '../../src/preference/reference.js';
import { type PairMethod, pairStep } from '../../src/preference/pair_step.js';
import { rewardStep } from '../../src/preference/reward_step.js';
import type { PairBatch } from '../../src/preference/pair_dataset.js';
import type { TrainStep } from '../../src/train/step.js';
import { ADAPTERS, type Adapter, addAdapters, LORA, PAD, TINY_PREF, tinyPolicy, tinyPreferenceDir } from './tiny_preference.js';


async function data(dir: string) {
  const tokenizer = await loadTokenizer(dir);
  return loadPreferenceData(join(dir, 'pairs.jsonl'), { tokenizer, seqLen: 24, padId: PAD, evalFraction: 0.25, seed: 0, vocabSize: 259 });
}

/** Trains steps and returns the held-out metrics before and after. */
async function trainAndEval(model: k.nn.Module, step: TrainStep<PairBatch>, d: Awaited<ReturnType<typeof data>>, opts: { steps: number; lr: number }) {
  const evals: Record<string, number>[] = [];
  const trainer = new Trainer({
    model, data: d.train, evalData: d.eval, step, batchSize: 8, maxSteps: opts.steps, lr: opts.lr, clip: 1,
    onEval: (r) => evals.push({ loss: r.loss, ...r.metrics }),
  });
  trainer.evaluate();
  await trainer.train();
  trainer.evaluate();
  return { before: evals[0], after: evals[1] };
}

/** The seeded tiny policy with adapters; with reference: true, the reference log-probs of both splits computed (adapters off). */
function loraPolicy(d: Awaited<ReturnType<typeof data>>, opts: { reference: boolean; adapter?: Adapter }): k.CausalLM {
  k.manualSeed(3);
  const model = tinyPolicy();
  addAdapters(model, opts.adapter ?? 'LoRA');
  if (opts.reference) for (const ds of [d.train, d.eval!]) computeReferenceLogps(model, ds);
  return model;
}

const dir = tinyPreferenceDir(96);

test('DPO with LoRA: held-out reward margin grows from exactly 0 and accuracy reaches 0.9', async () => {
  const d = await data(dir);
  const model = loraPolicy(d, { reference: true });
  const { before, after } = await trainAndEval(model, pairStep(model, { method: 'dpo', options: { beta: 0.5 } }), d, { steps: 40, lr: 1e-2 });
  assert.equal(before['rewards/margins'], 0, 'policy = reference at step 0 (LoRA B = 0)');
  assert.ok(Math.abs(before.loss - Math.LN2) < 1e-6, `step-0 loss is log 2, got ${before.loss}`);
  assert.ok(after['rewards/margins'] > 1, `margin ${after['rewards/margins']}`);
  assert.ok(after['rewards/accuracies'] >= 0.9, `accuracy ${after['rewards/accuracies']}`);
  model.dispose();
});

for (const [name, method, metric] of [
  ['ORPO', { method: 'orpo', options: { beta: 0.5 } }, 'log_odds_ratio'],
  ['SimPO', { method: 'cpo', options: { lossType: 'simpo', beta: 2, simpoGamma: 0.5, cpoAlpha: 0 } }, 'rewards/margins'],
] as [string, PairMethod, string][]) for (const adapter of ADAPTERS) {
  test(`${name} with ${adapter} improves its held-out ${metric} and accuracy`, async () => {
    const d = await data(dir);
    const model = loraPolicy(d, { reference: false, adapter });
    const { before, after } = await trainAndEval(model, pairStep(model, method), d, { steps: 40, lr: 1e-2 });
    assert.ok(after[metric] > before[metric] + 0.1, `${metric}: ${before[metric]} -> ${after[metric]}`);
    assert.ok(after['rewards/accuracies'] >= 0.9, `accuracy ${before['rewards/accuracies']} -> ${after['rewards/accuracies']}`);
    model.dispose();
  });
}

for (const adapter of ADAPTERS) test(`KTO with ${adapter}: unpaired data, KL estimate logged, held-out reward margin grows from 0`, async () => {
  const tokenizer = await loadTokenizer(dir);
  const d = await loadUnpairedData(join(dir, 'kto.jsonl'), { tokenizer, seqLen: 24, padId: PAD, evalFraction: 0.25, seed: 0, vocabSize: 259 });
  const kl = d.train.examples[0].rejected;
  assert.ok(kl.inputIds.length > 0 && kl.labels.some((l) => l !== -100), 'every example has a KL row (its prompt, another completion)');
  const model = loraPolicy(d, { reference: true, adapter });
  const { before, after } = await trainAndEval(model, pairStep(model, { method: 'kto', options: { beta: 0.5 } }), d, { steps: 40, lr: 1e-2 });
  assert.equal(before['rewards/margins'], 0);
  assert.equal(before.kl, 0, 'policy = reference: the KL estimate is 0');
  assert.ok(after['rewards/margins'] > 0.5, `margin ${after['rewards/margins']}`);
  assert.ok(after.loss < before.loss, `loss ${before.loss} -> ${after.loss}`);
  model.dispose();
});

for (const adapter of ADAPTERS) test(`reward model with ${adapter} and a trained score head: held-out pairwise accuracy reaches 0.9`, async () => {
  const d = await data(dir);
  k.manualSeed(3);
  const rm = buildModel({ ...TINY_PREF, architectures: ['LlamaForSequenceClassification'], num_labels: 1 }, 'rm config', { generator: new k.Generator(1) });
  assert.ok(rm instanceof DecoderForSequenceClassification);
  addAdapters(rm, adapter, { skip: ['score'], modulesToSave: ['score'] });
  assert.ok(rm.namedParameters().some(([n, p]) => n.startsWith('score.') && p.requiresGrad), 'the score head trains');
  const { before, after } = await trainAndEval(rm, rewardStep(rm), d, { steps: 40, lr: 1e-2 });
  assert.ok(after.accuracy >= 0.9 && after.accuracy > before.accuracy, `accuracy ${before.accuracy} -> ${after.accuracy}`);
  assert.ok(after.loss < before.loss, `loss ${before.loss} -> ${after.loss}`);
  rm.dispose();
});

test('reward model: a pad id that also occurs inside the text is refused (the score would be read mid-sequence)', async () => {
  const d = await data(dir);
  const rm = buildModel({ ...TINY_PREF, architectures: ['LlamaForSequenceClassification'], num_labels: 1, pad_token_id: 58 }, 'rm config', { generator: new k.Generator(1) });
  assert.ok(rm instanceof DecoderForSequenceClassification);
  // every prompt ends with ':' (byte 58): with pad_token_id 58, HF would read each score before the ':'
  assert.throws(() => rewardStep(rm).accumulate([d.train.collate([0, 1])], {}), /pad_token_id 58 occurs inside a sequence \(row 0 would be scored at token 2/);
  rm.dispose();
});

test('a DPO step and its evaluation free everything they made: live storage returns to its baseline', async () => {
  const d = await data(dir);
  const model = loraPolicy(d, { reference: true });
  const step = pairStep(model, { method: 'dpo', options: { beta: 0.5 } });
  const batch = d.train.collate([0, 1, 2]);
  step.accumulate([batch], {}); // warm-up: the rotary cache and the first .grad tensors are kept on purpose
  for (const p of model.parameters()) p.zeroGrad();
  const before = k.memory.stats();
  step.accumulate([batch], {});
  step.evaluate([batch]);
  for (const p of model.parameters()) p.zeroGrad();
  const after = k.memory.stats();
  assert.equal(after.storages, before.storages, 'no storage left behind');
  assert.deepEqual(after.current, before.current);
  model.dispose();
});

test('DPO with QLoRA (NF4 base): the margin still grows from 0', async () => {
  const d = await data(dir);
  const model = loraPolicy(d, { reference: true, adapter: 'QLoRA' });
  const { before, after } = await trainAndEval(model, pairStep(model, { method: 'dpo', options: { beta: 0.5 } }), d, { steps: 40, lr: 1e-2 });
  assert.equal(before['rewards/margins'], 0);
  assert.ok(after['rewards/margins'] > 1 && after['rewards/accuracies'] >= 0.9, `margin ${after['rewards/margins']}, accuracy ${after['rewards/accuracies']}`);
  model.dispose();
});

test('DPO resume from a checkpoint equals the uninterrupted run (weights and metrics.jsonl)', async () => {
  const d = await data(dir);
  const run = async (out: string, maxSteps: number, resumeFrom?: string) => {
    k.manualSeed(3);
    const model = tinyPolicy();
    injectLora(model, LORA);
    computeReferenceLogps(model, d.train);
    const trainer = new Trainer({ model, data: d.train, step: pairStep(model, { method: 'dpo', options: { beta: 0.5 } }), batchSize: 8, maxSteps, lr: 1e-2, outputDir: out, saveEvery: 3, resumeFrom });
    await trainer.train();
    const weights = model.namedParameters().filter(([, p]) => p.requiresGrad).map(([n, p]) => [n, [...p.toFloat32Array()]] as const);
    model.dispose();
    return weights;
  };
  const whole = mkdtempSync(join(tmpdir(), 'kestrel-dpo-whole-'));
  const parted = mkdtempSync(join(tmpdir(), 'kestrel-dpo-part-'));
  const straight = await run(whole, 7);
  await run(parted, 3);
  const resumed = await run(parted, 7, join(parted, 'checkpoint-3'));
  assert.deepEqual(resumed, straight, 'trainable weights bit-identical');
  const lines = (p: string) => readFileSync(join(p, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => {
    const { tokens_per_sec: _t, mem_peak: _m, ...rest } = JSON.parse(l);
    return rest;
  });
  assert.deepEqual(lines(parted), lines(whole), 'the same logged losses and TRL metrics for steps 1-7');
  assert.ok('rewards/margins' in lines(whole)[0] && 'logps/rejected' in lines(whole)[0], 'TRL names in metrics.jsonl');
});
