// `kestrel train --model DIR|config.json --data FILE --output DIR [...]`: settings from
// defaults < --config run.yaml|json < --deepspeed ds_config.json < flags; writes metrics.jsonl,
// checkpoints, and the final model as an HF folder in --output.
import { existsSync, realpathSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { loadDataset } from '../data/index.js';
import { readJson } from '../io/hf_folder.js';
import { CausalLM } from '../models/causal_lm.js';
import { loadCausalLM, savePretrained } from '../models/load.js';
import { setAttentionSparsity } from '../models/sparse_attention.js';
import { parseSparsityConfig } from '../ops/sparse/sparsity_config.js';
import { decoderConfig } from '../models/registry.js';
import { AdamW } from '../optim/adamw.js';
import * as S from '../optim/schedules.js';
import { Lion, SGD } from '../optim/sgd.js';
import { type Tokenizer, loadTokenizer } from '../tokenizer/index.js';
import { listCheckpoints, removeStaleTemps } from '../train/checkpoint.js';
import { DEFAULT_SETTINGS, type RunSettings, checkSettings, checkTrainBatchSize, fromDeepSpeed, readRunFile } from '../train/run_config.js';
import { Interrupted } from '../train/interrupt.js';
import { Trainer } from '../train/trainer.js';
import { decayParamGroups } from '../train/param_groups.js';
import type { Module } from '../nn/module.js';
import type { Optimizer } from '../optim/optimizer.js';
import { numberFlag, parseFlags } from './flags.js';
import { launchRanks } from './launch.js';
import { rankFromEnv } from '../dist/env.js';
import { initProcessGroup } from '../dist/init.js';
import type { ProcessGroup } from '../dist/process_group.js';
import { DistributedDataParallel } from '../dist/ddp.js';
import { ZeroStage1 } from '../dist/zero1.js';
import { ZeroStage2 } from '../dist/zero2.js';
import { resolveBucketSize, resolveStage3 } from '../train/ds_zero.js';
import type { DataParallel } from '../train/data_parallel.js';
import type { ParamGroup } from '../optim/optimizer.js';
import { ExpertParallelDataParallel, expertParallelTraining } from '../dist/expert_parallel_training.js';
import { gatherExperts } from '../models/moe.js';
import { ZeroStage3 } from '../dist/zero3.js';
import { saveZero3Pretrained } from '../dist/zero3_save.js';
import { isProfiling, report as profileReport, start as startProfile, stop as stopProfile } from '../profile/index.js';

const FLAGS = {
  model: { type: 'string' }, data: { type: 'string', multiple: true }, output: { type: 'string' }, tokenizer: { type: 'string' },
  format: { type: 'string' }, 'max-steps': { type: 'string' }, 'seq-len': { type: 'string' }, 'batch-size': { type: 'string' },
  'grad-accum': { type: 'string' }, lr: { type: 'string' }, 'weight-decay': { type: 'string' }, warmup: { type: 'string' },
  schedule: { type: 'string' }, clip: { type: 'string' }, dtype: { type: 'string' }, checkpointing: { type: 'string' }, 'checkpoint-layers': { type: 'string' },
  'eval-fraction': { type: 'string' }, 'eval-every': { type: 'string' }, 'save-every': { type: 'string' }, 'keep-last': { type: 'string' },
  seed: { type: 'string' }, 'skip-bad-lines': { type: 'boolean' }, resume: { type: 'string' }, config: { type: 'string' },
  deepspeed: { type: 'string' }, quiet: { type: 'boolean', default: false }, 'optimizer-in-backward': { type: 'boolean' },
  profile: { type: 'boolean', default: false }, 'zero-stage': { type: 'string' }, 'attention-sparsity': { type: 'string' },
  'expert-parallel': { type: 'string' },
} as const;

/**
 * What `kestrel train` sets beyond DEFAULT_SETTINGS: optimizer in backward where nothing blocks it
 * (--clip 0, --grad-accum 1, not fp16, one process), so full fine-tuning never holds every gradient;
 * elsewhere the ordinary step, with the same result.
 */
export const TRAIN_DEFAULTS: Partial<RunSettings> = { optimizerInBackward: 'auto' };

/** --profile: the steps after the run's first (relative to a resumed run's start) */
const PROFILE_STEPS = { first: 2, last: 4 };

/** v, checked to be one of `allowed` (the error names the flag and the choices). */
export function oneOf<T extends string>(v: unknown, allowed: readonly T[], what: string): T {
  if (!allowed.includes(v as T)) throw new Error(`${what} must be one of ${allowed.join(', ')}, got '${String(v)}'`);
  return v as T;
}

type Flags = Record<string, { type: 'string' | 'boolean'; multiple?: boolean; default?: string | boolean }>;

/**
 * Merges defaults, the run file, the DeepSpeed config and the flags. A command built on train
 * (finetune) passes its own extra flags and defaults; its flag values come back in `values`.
 */
export function resolveSettings(argv: string[], extra: { flags?: Flags; defaults?: Partial<RunSettings> } = {}): {
  settings: RunSettings; warnings: string[]; values: Record<string, unknown>;
  /** what the run file, the DeepSpeed config and the flags set (the rest are defaults) */
  explicit: Partial<RunSettings>;
} {
  const { values } = parseFlags(argv, { ...FLAGS, ...extra.flags } as typeof FLAGS);
  const file = values.config ? readRunFile(values.config) : {};
  const world = rankFromEnv().worldSize;
  const ds: ReturnType<typeof fromDeepSpeed> = values.deepspeed ? fromDeepSpeed(readJson(values.deepspeed), values.deepspeed, world) : { settings: {}, warnings: [] };
  const flags: Partial<RunSettings> = {};
  const n = (name: string): number | undefined => numberFlag(values, name);
  const set = <K extends keyof RunSettings>(k: K, v: RunSettings[K] | undefined): void => {
    if (v !== undefined) flags[k] = v;
  };
  set('model', values.model);
  set('data', values.data);
  set('output', values.output);
  set('tokenizer', values.tokenizer);
  set('format', values.format as RunSettings['format'] | undefined);
  set('maxSteps', n('max-steps'));
  set('seqLen', n('seq-len'));
  set('batchSize', n('batch-size'));
  set('gradAccum', n('grad-accum'));
  set('lr', n('lr'));
  set('weightDecay', n('weight-decay'));
  set('clip', n('clip'));
  set('optimizerInBackward', values['optimizer-in-backward']);
  set('dtype', values.dtype as RunSettings['dtype'] | undefined);
  set('checkpointing', values.checkpointing as RunSettings['checkpointing'] | undefined);
  set('checkpointLayers', n('checkpoint-layers'));
  set('evalFraction', n('eval-fraction'));
  set('evalEvery', n('eval-every'));
  set('saveEvery', n('save-every'));
  set('keepLast', n('keep-last'));
  set('seed', n('seed'));
  set('skipBadLines', values['skip-bad-lines']);
  set('resume', values.resume);
  set('zeroStage', n('zero-stage') as RunSettings['zeroStage'] | undefined);
  set('expertParallel', n('expert-parallel'));
  const sparsity = values['attention-sparsity'];
  if (sparsity) set('sparseAttention', parseSparsityConfig(readJson(sparsity), sparsity));
  checkSettings(flags, (k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`);
  const explicit: Partial<RunSettings> = { ...file, ...ds.settings, ...flags };
  const merged = { ...DEFAULT_SETTINGS, ...extra.defaults, ...explicit } as RunSettings;
  if (values.schedule || values.warmup) merged.schedule = { type: (values.schedule ?? merged.schedule.type) as RunSettings['schedule']['type'], warmup: numberFlag(values, 'warmup', { int: true, min: 0 }) ?? merged.schedule.warmup, params: merged.schedule.params };
  if (typeof merged.data === 'string') merged.data = [merged.data];
  for (const k of ['model', 'output'] as const) if (!merged[k]) throw new Error(`--${k} is required`);
  if (!merged.data?.length) throw new Error('--data is required');
  if (![true, false, 'auto'].includes(merged.optimizerInBackward)) throw new Error(`optimizerInBackward must be true, false or 'auto', got ${JSON.stringify(merged.optimizerInBackward)}`);
  oneOf(merged.dtype, ['fp32', 'bf16', 'fp16'] as const, '--dtype');
  oneOf(merged.checkpointing, ['none', 'full', 'selective'] as const, '--checkpointing');
  if (merged.checkpointLayers !== undefined && merged.checkpointing !== 'full')
    throw new Error(`--checkpoint-layers ${merged.checkpointLayers} needs --checkpointing full (it says how many of the layers recompute), got --checkpointing ${merged.checkpointing}`);
  oneOf(merged.format, ['auto', 'text', 'pretokenized', 'alpaca', 'chat', 'sharegpt'] as const, '--format');
  oneOf(merged.schedule.type, ['constant', 'linear', 'cosine', 'WarmupLR', 'WarmupDecayLR', 'WarmupCosineLR'] as const, '--schedule');
  if (values.deepspeed) checkTrainBatchSize(merged, ds.trainBatchSize, values.deepspeed, world);
  return { settings: merged, warnings: ds.warnings, values, explicit };
}

/** The learning-rate schedule the settings name. */
export function schedule(s: RunSettings): S.Schedule {
  const { lr, maxSteps: total } = s;
  const w = s.schedule.warmup;
  // "auto" scheduler values are the HF Trainer's: warmup from 0 to --lr over --warmup steps, ending at --max-steps
  const auto: Record<string, number> = { warmup_min_lr: 0, warmup_max_lr: lr, warmup_num_steps: w, total_num_steps: total };
  const p = Object.fromEntries(Object.entries(s.schedule.params).map(([k, v]) => [k, v === 'auto' && k in auto ? auto[k] : v])) as Record<string, number>;
  switch (s.schedule.type) {
    case 'constant': return S.constant(lr, w);
    case 'linear': return S.linear(lr, w, total);
    case 'cosine': return S.cosine(lr, w, total);
    case 'WarmupLR': return S.warmupLR(p);
    case 'WarmupDecayLR': return S.warmupDecayLR({ total_num_steps: total, ...p });
    case 'WarmupCosineLR': return S.warmupCosineLR(lr, { total_num_steps: total, ...p });
  }
}

async function loadModel(s: RunSettings): Promise<{ model: CausalLM; hfConfig: Record<string, unknown>; tokenizer: Tokenizer | null }> {
  if (existsSync(s.model) && statSync(s.model).isFile()) {
    const hfConfig = readJson(s.model); // a config.json alone: random initialisation
    const tokDir = s.tokenizer ?? dirname(s.model);
    const tokenizer = s.tokenizer || existsSync(join(tokDir, 'tokenizer.json')) ? await loadTokenizer(tokDir) : null;
    return { model: new CausalLM(decoderConfig(hfConfig, s.model)), hfConfig, tokenizer };
  }
  const p = await loadCausalLM(s.model, { tokenizer: s.tokenizer });
  if (!(p.model instanceof CausalLM)) throw new Error(`${s.model}: training supports the Llama-family decoders for now`);
  return { model: p.model, hfConfig: p.hfConfig, tokenizer: p.tokenizer };
}

/**
 * The optimizer the settings name over the model's trainable parameters (weight decay off for norms
 * and biases), or over given groups (a ZeRO-1 rank's shards).
 */
export function makeOptimizer(s: RunSettings, model: Module, groups = decayParamGroups(model, s.weightDecay)): Optimizer<{ lr: number }> {
  return s.optimizer === 'sgd' ? new SGD(groups, { lr: s.lr })
    : s.optimizer === 'lion' ? new Lion(groups, { lr: s.lr })
    : new AdamW(groups, { lr: s.lr, betas: s.betas, eps: s.eps });
}

/** --resume latest|DIR as a checkpoint folder (undefined: a fresh run). */
export const resumePath = (s: Pick<RunSettings, 'resume' | 'output'>): string | undefined => (s.resume === 'latest' ? listCheckpoints(s.output).at(-1)?.path : s.resume);

/** What a command built on train does to the model before training and how it saves the result. */
export interface TrainingPlan {
  /** called on the loaded model before the optimizer sees it (inject adapters, quantize, freeze) */
  prepare?: (model: CausalLM) => void;
  /** writes the result to the output folder; default: the whole model as an HF folder */
  save?: (model: CausalLM, hfConfig: Record<string, unknown>, output: string) => string;
}

/** `--nproc N` (sugar for `kestrel launch -n N -- kestrel <command> ...`): the count and the other arguments. */
export function takeNproc(argv: string[]): { nproc: number | null; rest: string[] } {
  const i = argv.findIndex((a) => a === '--nproc' || a.startsWith('--nproc='));
  if (i < 0) return { nproc: null, rest: argv };
  const raw = argv[i].includes('=') ? argv[i].slice('--nproc='.length) : argv[i + 1];
  const nproc = numberFlag({ nproc: raw }, 'nproc', { int: true, min: 1 })!;
  return { nproc, rest: [...argv.slice(0, i), ...argv.slice(i + (argv[i].includes('=') ? 1 : 2))] };
}

export async function trainCommand(argv: string[]): Promise<number> {
  const { nproc, rest } = takeNproc(argv);
  if (nproc !== null) return launchRanks(nproc, ['kestrel', 'train', ...rest]);
  const { settings, warnings, values } = resolveSettings(argv, { defaults: TRAIN_DEFAULTS });
  return runTraining(settings, warnings, argv.includes('--quiet'), {}, values.profile === true);
}

/**
 * The onStep hook of --profile: k.profile runs over the run's steps 2-4 (step 1 warms caches, threads
 * and allocations up; a shorter run profiles what it has) and its table goes to stderr.
 */
function profileSteps(startStep: number, maxSteps: number): { onStep: (m: { step: number }) => void; finish: () => void } {
  const last = Math.min(startStep + PROFILE_STEPS.last, maxSteps);
  const first = Math.min(startStep + PROFILE_STEPS.first, last);
  if (first === startStep + 1) startProfile();
  return {
    onStep: (m) => {
      if (m.step === first - 1) startProfile();
      if (m.step !== last || !isProfiling()) return;
      stopProfile();
      process.stderr.write(`\nprofile of steps ${first}-${last}\n${profileReport({ steps: last - first + 1 })}`);
    },
    finish: () => {
      if (isProfiling()) stopProfile();
    },
  };
}

/**
 * This rank's data-parallel strategy (stage 0, ZeRO-1, -2 or -3; with --expert-parallel, over the
 * dense part with the experts split) after every rank took rank 0's weights, and the parameter
 * groups to build the optimizer over (undefined: the model's own).
 */
async function dataParallel(s: RunSettings, model: CausalLM): Promise<{ dp: DataParallel & { group: ProcessGroup }; groups?: ParamGroup<{ weightDecay: number }>[] }> {
  const pg = await initProcessGroup();
  const bucketElements = resolveBucketSize(s.reduceBucketSize, model.config.hiddenSize);
  const bucketBytes = bucketElements === undefined ? undefined : bucketElements * 4;
  const stage0 = new DistributedDataParallel(pg, bucketBytes);
  await stage0.broadcastFromRank0(model.parameters());
  if (s.expertParallel > 1) {
    if (s.zeroStage === 3) throw new Error(`--expert-parallel ${s.expertParallel}: the dense part trains under ZeRO stage 0, 1 or 2, not 3`);
    return expertParallelTraining(pg, model, { ...s, zeroStage: s.zeroStage, bucketBytes });
  }
  if (s.zeroStage === 0) return { dp: stage0 };
  const groups = decayParamGroups(model, s.weightDecay);
  const zero = s.zeroStage === 3 ? zeroStage3(s, model, pg, groups, bucketBytes) : s.zeroStage === 1 ? new ZeroStage1(pg, groups, bucketBytes) : new ZeroStage2(pg, groups, bucketBytes);
  return { dp: zero, groups: zero.shardGroups };
}

/**
 * Closes the world after training. A finished run first brings back what rank 0 saves: ZeRO-3
 * writes the model itself (every rank gathers each layer) or, for a plan's adapters, gathers the
 * trainable parameters back; expert parallel returns every rank's experts.
 */
async function closeDataParallel(dp: (DataParallel & { group: ProcessGroup }) | null, model: CausalLM, finished: boolean, save: { output: string; hfConfig: Record<string, unknown>; adapters: boolean }): Promise<void> {
  try {
    if (!finished) return;
    if (dp instanceof ZeroStage3) {
      if (save.adapters) dp.gatherTrainable();
      else await saveZero3Pretrained(dp, save.output, model, save.hfConfig);
    } else if (dp instanceof ExpertParallelDataParallel) await gatherExperts(model, dp.groups.expertParallel);
  } finally {
    dp?.group.destroy();
  }
}

/** ZeRO-3 with ds_config's stage-3 limits. */
function zeroStage3(s: RunSettings, model: CausalLM, pg: ProcessGroup, groups: ReturnType<typeof decayParamGroups>, bucketBytes: number | undefined): ZeroStage3<Partial<{ weightDecay: number }>> {
  const { persistenceThreshold, prefetchBucketSize } = resolveStage3(s.stage3 ?? {}, model.config.hiddenSize);
  return new ZeroStage3(pg, model, groups, {
    bucketBytes, persistenceThreshold,
    ...(prefetchBucketSize === undefined ? {} : { prefetchBytes: prefetchBucketSize * 4 }),
    ...(s.stage3?.maxLiveParameters === undefined ? {} : { maxLiveElements: s.stage3.maxLiveParameters }),
  });
}

/** Loads the model and the data, trains, saves; shared by `kestrel train` and `kestrel finetune`. */
/** The output folder must not be the model folder: the final save would overwrite the base model. */
export function checkOutput(s: RunSettings): void {
  const real = (p: string): string => (existsSync(p) ? realpathSync(p) : p);
  const modelDir = existsSync(s.model) && statSync(s.model).isFile() ? null : real(s.model);
  if (modelDir !== null && real(s.output) === modelDir) throw new Error(`--output ${s.output} is the --model folder: training would overwrite the base model; choose another output folder`);
  if (existsSync(s.output) && !statSync(s.output).isDirectory()) throw new Error(`--output ${s.output} is a file, not a folder`);
}

export async function runTraining(s: RunSettings, warnings: string[], quiet: boolean, plan: TrainingPlan = {}, profile = false): Promise<number> {
  const { rank, worldSize } = rankFromEnv();
  // every rank reads the same settings: rank 0 alone says what it noticed
  if (rank === 0) for (const w of warnings) process.stderr.write(`warning: ${w}\n`);
  checkOutput(s);
  // ranks tokenize into their own caches: one folder written by several processes would race
  const cacheDir = join(s.output, rank === 0 ? '.data-cache' : `.data-cache-rank${rank}`);
  removeStaleTemps(cacheDir);
  const { model, hfConfig, tokenizer } = await loadModel(s);
  model.checkpointing = s.checkpointing;
  if (s.checkpointLayers !== undefined) model.model.checkpointLayers = s.checkpointLayers;
  if (s.sparseAttention) setAttentionSparsity(model, s.sparseAttention);
  plan.prepare?.(model);
  const { train, eval: evalData, stats } = await loadDataset(s.data, {
    format: s.format, tokenizer: tokenizer ?? undefined, seqLen: s.seqLen, seed: s.seed, evalFraction: s.evalFraction,
    skipBadLines: s.skipBadLines, cacheDir, vocabSize: model.config.vocabSize,
  });
  if (stats.badLines) process.stderr.write(`skipped ${stats.badLines} bad lines (first: ${stats.badLineMessages[0]})\n`);
  const resume = resumePath(s);
  if (s.expertParallel > 1 && (worldSize === 1 || resume)) throw new Error(`--expert-parallel ${s.expertParallel}: ${resume ? 'cannot resume (checkpoints of split experts are not written yet)' : 'needs --nproc'}`);
  const parallel = worldSize > 1 ? await dataParallel(s, model) : null;
  const dp = parallel?.dp ?? null;
  // ZeRO >= 1: the optimizer is built over this rank's shards of the parameter groups (and its own experts)
  const opt = makeOptimizer(s, model, parallel?.groups);
  let prof: ReturnType<typeof profileSteps> | null = null;
  const trainer = new Trainer({
    model, data: train, evalData, optimizer: opt, schedule: schedule(s), batchSize: s.batchSize, gradAccum: s.gradAccum,
    maxSteps: s.maxSteps, clip: s.clip, optimizerInBackward: s.optimizerInBackward, outputDir: s.output, saveEvery: s.saveEvery, keepLast: s.keepLast, evalEvery: s.evalEvery,
    evalBatches: 8, resumeFrom: resume, dtype: s.dtype, lossScaler: s.lossScaler, progress: !quiet && process.stderr.isTTY,
    onStep: (m) => prof?.onStep(m), dataParallel: dp,
  });
  if (profile) prof = profileSteps(trainer.step, s.maxSteps);
  const metrics = await trainer.train().finally(() => prof?.finish()).catch((e: unknown) => {
    dp?.group.destroy();
    throw e;
  });
  await closeDataParallel(dp, model, !trainer.interrupted, { output: s.output, hfConfig, adapters: plan.save !== undefined });
  if (trainer.interrupted) {
    model.dispose();
    opt.dispose();
    throw new Interrupted(`interrupted at step ${trainer.step}: checkpoint saved to ${trainer.lastCheckpoint}; continue with --resume latest`);
  }
  let what = 'model';
  if (rank !== 0) return (model.dispose(), opt.dispose(), 0); // rank 0 holds the same weights and saves them
  if (plan.save) what = plan.save(model, hfConfig, s.output);
  else if (!(dp instanceof ZeroStage3)) savePretrained(s.output, { model, hfConfig }); // ZeRO-3 wrote it above
  const last = metrics.at(-1);
  process.stdout.write(`trained to step ${trainer.step}${last ? `, loss ${last.loss.toFixed(4)}` : ''}; ${what} saved to ${s.output}\n`);
  model.dispose();
  opt.dispose();
  return 0;
}
