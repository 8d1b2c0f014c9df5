// `kestrel dpo|orpo|simpo|kto|rm --model DIR --data FILE --output DIR [--lora] [...]`: preference
// training with one shape for every method, on the Trainer (its flags, checkpoints, resume,
// metrics.jsonl with TRL's metric names). DPO's and KTO's reference log-probs are computed once before the
// first step (the base with adapters disabled under --lora); ORPO and SimPO need no reference; rm
// trains a *ForSequenceClassification reward model (a causal LM folder gets a fresh score head).
import { join } from 'node:path';
import { type LoraConfig, injectLora, mergeLora, saveAdapter } from '../lora/peft.js';
import { CausalLM } from '../models/causal_lm.js';
import { loadPretrained, savePretrained } from '../models/load.js';
import { buildModel } from '../models/registry.js';
import { DecoderForSequenceClassification, isSequenceClassification } from '../models/seq_cls.js';
import { quantizeModel } from '../quant/quantize_model.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { Interrupted } from '../train/interrupt.js';
import type { TrainStep } from '../train/step.js';
import { type BatchSource, type StepMetrics, Trainer } from '../train/trainer.js';
import type { Module } from '../nn/module.js';
import type { RunSettings } from '../train/run_config.js';
import { CPO_LOSS_TYPES, type CpoLossType } from '../preference/cpo_loss.js';
import { DPO_LOSS_TYPES, type DpoLossType } from '../preference/dpo_loss.js';
import { KTO_LOSS_TYPES } from '../preference/kto_loss.js';
import { loadPreferenceData, loadUnpairedData } from '../preference/load.js';
import type { PairBatch } from '../preference/pair_dataset.js';
import { type PairMethod, pairStep } from '../preference/pair_step.js';
import { computeReferenceLogps } from '../preference/reference.js';
import { rewardStep } from '../preference/reward_step.js';
import { loraFromFlags } from './finetune.js';
import { numberFlag } from './flags.js';
import { checkOutput, makeOptimizer, oneOf, resolveSettings, resumePath, schedule } from './train.js';

export const PREFERENCE_METHODS = ['dpo', 'orpo', 'simpo', 'kto', 'rm'] as const;
export type PreferenceMethod = (typeof PREFERENCE_METHODS)[number];

/** The adapter flags every RL/preference command takes (finetune's, plus --lora / --qlora). */
export const ADAPTER_FLAGS = {
  lora: { type: 'boolean' }, qlora: { type: 'boolean' }, 'lora-r': { type: 'string' }, 'lora-alpha': { type: 'string' },
  'lora-dropout': { type: 'string' }, target: { type: 'string' }, rslora: { type: 'boolean' },
} as const;

const FLAGS = {
  ...ADAPTER_FLAGS,
  beta: { type: 'string' }, 'loss-type': { type: 'string' }, 'label-smoothing': { type: 'string' }, 'simpo-gamma': { type: 'string' },
  'cpo-alpha': { type: 'string' }, 'reference-free': { type: 'boolean' }, margin: { type: 'string' }, 'chat-template': { type: 'string' },
  'desirable-weight': { type: 'string' }, 'undesirable-weight': { type: 'string' },
} as const;

/** Each method's default beta: TRL's DPOConfig 0.1, ORPOConfig 0.1, KTOConfig 0.1, SimPO's paper 2.0. */
export const DEFAULT_BETA: Record<Exclude<PreferenceMethod, 'rm'>, number> = { dpo: 0.1, orpo: 0.1, kto: 0.1, simpo: 2 };

/** An optional choice flag: undefined when absent, else one of `allowed`. */
const choice = <T extends string>(v: unknown, allowed: readonly T[], flag: string): T | undefined => (v === undefined ? undefined : oneOf(v, allowed, flag));

/** The method's loss settings from the flags. */
export function pairMethodFromFlags(method: Exclude<PreferenceMethod, 'rm'>, values: Record<string, unknown>): PairMethod {
  const beta = numberFlag(values, 'beta', { above: 0 }) ?? DEFAULT_BETA[method];
  const labelSmoothing = numberFlag(values, 'label-smoothing', { min: 0, below: 0.5 });
  if (method === 'dpo') {
    const lossType: DpoLossType | undefined = choice(values['loss-type'], DPO_LOSS_TYPES, '--loss-type');
    return { method, options: { beta, lossType, labelSmoothing }, referenceFree: values['reference-free'] === true };
  }
  if (method === 'orpo') return { method, options: { beta } };
  if (method === 'kto') {
    const lossType = choice(values['loss-type'], KTO_LOSS_TYPES, '--loss-type');
    const weight = (f: string): number | undefined => numberFlag(values, f, { above: 0 });
    return { method, options: { beta, lossType, desirableWeight: weight('desirable-weight'), undesirableWeight: weight('undesirable-weight') } };
  }
  const lossType: CpoLossType = choice(values['loss-type'], CPO_LOSS_TYPES, '--loss-type') ?? 'simpo';
  return { method: 'cpo', options: { lossType, beta, labelSmoothing, simpoGamma: numberFlag(values, 'simpo-gamma', { min: 0 }) ?? 0.5, cpoAlpha: numberFlag(values, 'cpo-alpha', { min: 0 }) ?? 0 } };
}

/**
 * A reward model from a folder: a *ForSequenceClassification folder as it is, or a causal LM's
 * trunk under a fresh 1-label score head (HF's from_pretrained with num_labels=1 does the same).
 * pad_token_id (where the score is read) defaults to the tokenizer's pad, else its eos.
 */
export async function rewardModel(dir: string, tokenizerDir: string | undefined): Promise<{ model: DecoderForSequenceClassification; hfConfig: Record<string, unknown>; tokenizer: Tokenizer | null }> {
  const p = await loadPretrained(dir, { tokenizer: tokenizerDir });
  if (p.model instanceof DecoderForSequenceClassification) return { model: p.model, hfConfig: p.hfConfig, tokenizer: p.tokenizer };
  if (!(p.model instanceof CausalLM) || isSequenceClassification(p.hfConfig)) throw new Error(`${dir}: rm needs a decoder-family model folder (a causal LM or a *ForSequenceClassification)`);
  const lm = p.model;
  const pad = p.hfConfig.pad_token_id ?? p.tokenizer?.padTokenId ?? p.tokenizer?.eosTokenId ?? null;
  const arch = String((p.hfConfig.architectures as string[] | undefined)?.[0] ?? 'LlamaForCausalLM').replace(/ForCausalLM$/, 'ForSequenceClassification');
  const hfConfig = { ...p.hfConfig, architectures: [arch], num_labels: 1, id2label: { 0: 'LABEL_0' }, label2id: { LABEL_0: 0 }, pad_token_id: pad };
  const model = buildModel(hfConfig, join(dir, 'config.json')) as DecoderForSequenceClassification;
  model.loadStateDict(Object.fromEntries(lm.namedParameters().filter(([n]) => n.startsWith('model.'))), { strict: false });
  lm.dispose();
  return { model, hfConfig, tokenizer: p.tokenizer };
}

/** A Llama-family causal LM folder with its tokenizer (required: the data is text). */
export async function causalModel(dir: string, tokenizerDir: string | undefined): Promise<{ model: CausalLM; hfConfig: Record<string, unknown>; tokenizer: Tokenizer | null }> {
  const p = await loadPretrained(dir, { tokenizer: tokenizerDir });
  if (!(p.model instanceof CausalLM)) throw new Error(`${dir}: preference training needs a Llama-family causal LM folder (got ${p.model.constructor.name})`);
  return { model: p.model, hfConfig: p.hfConfig, tokenizer: p.tokenizer };
}

/**
 * --lora / --qlora: quantizes the base (QLoRA) and injects adapters; `modulesToSave` train in full
 * (a reward model's score head). Returns the adapter config, or null for full training.
 */
export function applyAdapters(model: CausalLM | DecoderForSequenceClassification, values: Record<string, unknown>, modulesToSave: string[] = []): LoraConfig | null {
  if (!values.lora && !values.qlora) return null;
  const lora = { ...loraFromFlags(values), ...(modulesToSave.length ? { modulesToSave } : {}) };
  if (values.qlora) quantizeModel(model, { type: 'nf4', skip: modulesToSave }); // the fully trained heads stay float
  injectLora(model, lora);
  return lora;
}

/**
 * Trains an RL method on prompts with the run's settings (grpo, ppo: no eval split); a Ctrl-C
 * saves a checkpoint, disposes the models and throws Interrupted.
 */
export async function trainOnPrompts<B>(s: RunSettings, values: Record<string, unknown>, run: { model: Module; data: BatchSource<B>; step: TrainStep<B>; dispose: () => void }): Promise<{ trainer: Trainer<B>; metrics: StepMetrics[] }> {
  const { model, data, step } = run;
  const trainer = new Trainer({
    model, data, step, optimizer: makeOptimizer(s, model), schedule: schedule(s), batchSize: s.batchSize, gradAccum: s.gradAccum, maxSteps: s.maxSteps,
    clip: s.clip, outputDir: s.output, saveEvery: s.saveEvery, keepLast: s.keepLast, resumeFrom: resumePath(s), dtype: s.dtype,
    progress: values.quiet !== true && process.stderr.isTTY,
  });
  const metrics = await trainer.train();
  if (trainer.interrupted) {
    run.dispose();
    throw new Interrupted(`interrupted at step ${trainer.step}: checkpoint saved to ${trainer.lastCheckpoint}; continue with --resume latest`);
  }
  return { trainer, metrics };
}

/** Runs one preference method from its command line. */
export async function preferenceCommand(method: PreferenceMethod, argv: string[]): Promise<number> {
  const { settings: s, warnings, values } = resolveSettings(argv, { flags: FLAGS });
  for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
  if (s.format !== 'auto') throw new Error(`--format does not apply to ${method}: records are {prompt, chosen, rejected} (strings or messages), HH-RLHF {chosen, rejected} transcripts, or for kto {prompt, completion, label}`);
  const quiet = values.quiet === true;
  const pair = method === 'rm' ? null : pairMethodFromFlags(method, values);
  checkOutput(s);
  const { model, hfConfig, tokenizer } = method === 'rm' ? await rewardModel(s.model, s.tokenizer) : await causalModel(s.model, s.tokenizer);
  if (!tokenizer) throw new Error(`${s.model}: ${method} reads text records and needs a tokenizer (the model folder has none; pass --tokenizer DIR)`);
  const padId = model.config.padTokenId ?? tokenizer.padTokenId ?? tokenizer.eosTokenId ?? 0;
  model.checkpointing = s.checkpointing;
  const lora = applyAdapters(model, values, method === 'rm' ? ['score'] : []);
  const data = await (method === 'kto' ? loadUnpairedData : loadPreferenceData)(s.data, {
    tokenizer, chatTemplate: values['chat-template'] as string | undefined, seqLen: s.seqLen, padId, seed: s.seed,
    evalFraction: s.evalFraction, skipBadLines: s.skipBadLines, vocabSize: model.config.vocabSize,
  });
  if (data.badLines) process.stderr.write(`skipped ${data.badLines} bad records (first: ${data.badLineMessages[0]})\n`);
  if ((pair?.method === 'dpo' && !pair.referenceFree) || pair?.method === 'kto') {
    for (const ds of [data.train, data.eval]) if (ds) computeReferenceLogps(model as CausalLM, ds, { batchSize: s.batchSize });
  }
  const step: TrainStep<PairBatch> = method === 'rm' ? rewardStep(model as DecoderForSequenceClassification, { margin: numberFlag(values, 'margin') }) : pairStep(model as CausalLM, pair!);
  const opt = makeOptimizer(s, model);
  let lastEval: Record<string, number> | null = null;
  const trainer = new Trainer({
    model, data: data.train, evalData: data.eval, step, optimizer: opt, schedule: schedule(s), batchSize: s.batchSize, gradAccum: s.gradAccum,
    maxSteps: s.maxSteps, clip: s.clip, outputDir: s.output, saveEvery: s.saveEvery, keepLast: s.keepLast, evalEvery: s.evalEvery, evalBatches: 8,
    resumeFrom: resumePath(s), dtype: s.dtype, progress: !quiet && process.stderr.isTTY,
    onEval: (r) => (lastEval = { loss: r.loss, ...r.metrics }),
  });
  const metrics = await trainer.train();
  if (trainer.interrupted) {
    model.dispose();
    throw new Interrupted(`interrupted at step ${trainer.step}: checkpoint saved to ${trainer.lastCheckpoint}; continue with --resume latest`);
  }
  if (data.eval) trainer.evaluate(); // the final model's held-out metrics, also in eval.jsonl
  const headline = (m: Record<string, number>): string => Object.entries(m).filter(([k]) => /^loss$|accurac|margins/.test(k)).map(([k, v]) => ` ${k} ${v.toFixed(4)}`).join('');
  // a reward model's adapter would need a *ForSequenceClassification base to load into: rm merges
  // its adapters and saves the whole reward model, which transformers and loadPretrained read
  const saveAdapterOnly = lora && method !== 'rm';
  if (lora && method === 'rm') mergeLora(model);
  if (saveAdapterOnly) saveAdapter(model, s.output, lora, { baseModel: s.model });
  else savePretrained(s.output, { model, hfConfig });
  const last = metrics.at(-1);
  const trained = last ? headline({ loss: last.loss, ...last.metrics }) : '';
  const held = lastEval ? `; eval${headline(lastEval)}` : '';
  process.stdout.write(`${method}: trained to step ${trainer.step}${trained ? `,${trained}` : ''}${held}; ${saveAdapterOnly ? 'adapter' : lora ? 'merged model' : 'model'} saved to ${s.output}\n`);
  model.dispose();
  return 0;
}
