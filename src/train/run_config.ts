// Run settings for `kestrel train`: defaults, then a run.yaml / run.json, then a DeepSpeed
// ds_config.json, then command-line flags. DeepSpeed keys map onto the same settings; unknown keys
// are warned about by name; zero_optimization (ds_zero.ts) runs stages 0-3; "auto" values are left to the command line.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { type NumberRule, checkNumber } from '../io/check.js';
import type { LossScalerOptions } from '../optim/loss_scaler.js';
import { type SparsityConfig, parseSparsityConfig } from '../ops/sparse/sparsity_config.js';
import { type ZeroSettings, zeroFromDeepSpeed } from './ds_zero.js';

export interface RunSettings {
  model: string;
  data: string[];
  output: string;
  tokenizer?: string;
  format: 'auto' | 'text' | 'pretokenized' | 'alpaca' | 'chat' | 'sharegpt';
  maxSteps: number;
  seqLen: number;
  batchSize: number;
  gradAccum: number;
  lr: number;
  weightDecay: number;
  betas: [number, number];
  eps: number;
  optimizer: 'adamw' | 'sgd' | 'lion';
  schedule: { type: 'constant' | 'linear' | 'cosine' | 'WarmupLR' | 'WarmupDecayLR' | 'WarmupCosineLR'; warmup: number; params: Record<string, number | string> };
  clip: number;
  /** TrainerOptions.optimizerInBackward */
  optimizerInBackward: boolean | 'auto';
  dtype: 'fp32' | 'bf16' | 'fp16';
  lossScaler: LossScalerOptions;
  checkpointing: 'none' | 'full' | 'selective';
  /** under 'full': only the first n decoder layers recompute (DecoderModel.checkpointLayers); absent: every layer */
  checkpointLayers?: number;
  evalFraction: number;
  evalEvery: number;
  saveEvery: number;
  keepLast: number;
  seed: number;
  skipBadLines: boolean;
  resume?: string;
  logEvery: number;
  /** data-parallel ZeRO stage: 0 (gradients all-reduced), 1 (+ optimizer state partitioned), 2 (+ gradients partitioned), 3 (+ parameters partitioned) */
  zeroStage: 0 | 1 | 2 | 3;
  /** stage 3's limits from ds_config (ds_zero.ts ZeroSettings) */
  stage3?: Pick<ZeroSettings, 'persistenceThreshold' | 'prefetchBucketSize' | 'maxLiveParameters'>;
  /** MoE expert parallelism: the experts of every layer split over groups of this many ranks (1: off; src/dist/expert_parallel_training.ts) */
  expertParallel: number;
  /** elements per gradient bucket (DeepSpeed's reduce_bucket_size; default 16 MiB of float32; 'auto': hidden_size²) */
  reduceBucketSize?: number | 'auto';
  /** block-sparse attention: DeepSpeed's sparse_attention object (src/ops/sparse/sparsity_config.ts), checked where it was read */
  sparseAttention?: SparsityConfig;
}

export const DEFAULT_SETTINGS: Omit<RunSettings, 'model' | 'data' | 'output'> = {
  format: 'auto', maxSteps: 100, seqLen: 512, batchSize: 4, gradAccum: 1, lr: 1e-4, weightDecay: 0.01, betas: [0.9, 0.999],
  eps: 1e-8, optimizer: 'adamw', schedule: { type: 'cosine', warmup: 0, params: {} }, clip: 1, optimizerInBackward: false, dtype: 'fp32', lossScaler: {},
  checkpointing: 'none', evalFraction: 0, evalEvery: 0, saveEvery: 0, keepLast: 2, seed: 42, skipBadLines: false, logEvery: 1, zeroStage: 0,
  expertParallel: 1,
};

const INT_1: NumberRule = { int: true, min: 1 };
const INT_0: NumberRule = { int: true, min: 0 };

/** The allowed values of each numeric setting, wherever it comes from (flag, run file, DeepSpeed config). */
export const SETTING_RULES: Partial<Record<keyof RunSettings, NumberRule>> = {
  maxSteps: INT_1, seqLen: INT_1, batchSize: INT_1, gradAccum: INT_1, logEvery: INT_1,
  lr: { min: 0 }, weightDecay: { min: 0 }, eps: { above: 0 }, clip: { min: 0 }, evalFraction: { min: 0, below: 1 },
  evalEvery: INT_0, saveEvery: INT_0, keepLast: INT_0, seed: INT_0, zeroStage: { int: true, min: 0, max: 3 }, checkpointLayers: INT_0,
};

const SCALER_RULES: Record<keyof LossScalerOptions, NumberRule | null> = {
  lossScale: { min: 0 }, initialScalePower: { int: true, min: 0, max: 64 }, lossScaleWindow: INT_1, hysteresis: INT_1, minLossScale: { above: 0 },
  consecutiveHysteresis: null,
};

/**
 * Checks the numeric settings present in s; `name` says how the user wrote a setting (a flag,
 * a run-file key, a DeepSpeed field) so the error points at it.
 */
export function checkSettings(s: Partial<RunSettings>, name: (key: string) => string): void {
  for (const [k, rule] of Object.entries(SETTING_RULES)) if (s[k as keyof RunSettings] !== undefined) checkNumber(s[k as keyof RunSettings], rule, name(k));
  if (s.betas !== undefined) {
    if (!Array.isArray(s.betas) || s.betas.length !== 2) throw new RangeError(`${name('betas')} must be [beta1, beta2]`);
    s.betas.forEach((b, i) => checkNumber(b, { min: 0, below: 1 }, `${name('betas')}[${i}]`));
  }
  if (s.schedule?.warmup !== undefined) checkNumber(s.schedule.warmup, INT_0, name('warmup'));
  for (const [k, rule] of Object.entries(s.lossScaler ?? {}))
    if (rule !== undefined && SCALER_RULES[k as keyof LossScalerOptions]) checkNumber(rule, SCALER_RULES[k as keyof LossScalerOptions]!, name(`lossScaler.${k}`));
}

/** Reads run.yaml / run.json (keys in camelCase or snake_case, as the flags without dashes). */
export function readRunFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`${path}: cannot read (${(e as NodeJS.ErrnoException).code})`);
  }
  let v: unknown;
  try {
    v = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new Error(`${path}: invalid ${path.endsWith('.json') ? 'JSON' : 'YAML'} (${(e as Error).message})`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${path}: expected a mapping of settings`);
  const out: Record<string, unknown> = {};
  for (const [k, val] of Object.entries(v)) out[k.replace(/[-_]([a-z])/g, (_, c: string) => c.toUpperCase())] = val;
  checkSettings(out, (k) => `${path}: '${k}'`);
  if (out.sparseAttention !== undefined) out.sparseAttention = parseSparsityConfig(out.sparseAttention, `${path}: sparse_attention`);
  return out;
}

const DS_KNOWN = new Set([
  'train_batch_size', 'train_micro_batch_size_per_gpu', 'gradient_accumulation_steps', 'gradient_clipping', 'fp16', 'bf16',
  'optimizer', 'scheduler', 'activation_checkpointing', 'steps_per_print', 'wall_clock_breakdown', 'zero_optimization',
  'sparse_attention',
  'zero_allow_untested_optimizer', // Kestrel's optimizers are elementwise, so every one shards
]);

/** The DeepSpeed field each setting comes from, for errors. */
const DS_FIELDS: Record<string, string> = {
  batchSize: 'train_micro_batch_size_per_gpu', gradAccum: 'gradient_accumulation_steps', clip: 'gradient_clipping',
  lr: 'optimizer.params.lr', weightDecay: 'optimizer.params.weight_decay', eps: 'optimizer.params.eps', betas: 'optimizer.params.betas',
  'lossScaler.lossScale': 'fp16.loss_scale', 'lossScaler.initialScalePower': 'fp16.initial_scale_power', 'lossScaler.lossScaleWindow': 'fp16.loss_scale_window',
  'lossScaler.hysteresis': 'fp16.hysteresis', 'lossScaler.minLossScale': 'fp16.min_loss_scale',
};

const isAuto = (v: unknown): boolean => v === 'auto';

/**
 * DeepSpeed's check, after "auto" values took the command line's: the global batch is
 * micro-batch × accumulation × world size.
 */
export function checkTrainBatchSize(s: RunSettings, trainBatchSize: number | undefined, file: string, world: number): void {
  if (trainBatchSize === undefined || s.batchSize * s.gradAccum * world === trainBatchSize) return;
  throw new Error(`${file}: train_batch_size ${trainBatchSize} != micro-batch ${s.batchSize} x gradient accumulation ${s.gradAccum} x ${world} process(es) = ${s.batchSize * s.gradAccum * world}`);
}

/** Maps a DeepSpeed config onto settings; warnings name the keys Kestrel ignores. */
export function fromDeepSpeed(ds: Record<string, unknown>, file: string, world = 1): { settings: Partial<RunSettings>; warnings: string[]; trainBatchSize?: number } {
  const warnings: string[] = [];
  const s: Partial<RunSettings> = {};
  for (const key of Object.keys(ds)) if (!DS_KNOWN.has(key)) warnings.push(`${file}: unknown key '${key}' ignored`);
  const num = (v: unknown, field: string): number => {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${file}: '${field}' must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const obj = (v: unknown, field: string): Record<string, unknown> => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${file}: '${field}' must be an object`);
    return v as Record<string, unknown>;
  };
  if (ds.zero_optimization !== undefined) {
    const z = zeroFromDeepSpeed(obj(ds.zero_optimization, 'zero_optimization'), file);
    s.zeroStage = z.settings.stage;
    if (z.settings.reduceBucketSize !== undefined) s.reduceBucketSize = z.settings.reduceBucketSize;
    if (z.settings.stage === 3) {
      const { stage: _, reduceBucketSize: __, ...limits } = z.settings;
      s.stage3 = limits;
    }
    warnings.push(...z.notes);
  }
  // "auto" leaves a setting to the command line (or its default), as the HF Trainer fills it from its arguments
  const micro = ds.train_micro_batch_size_per_gpu;
  const accum = ds.gradient_accumulation_steps;
  if (micro !== undefined && !isAuto(micro)) s.batchSize = num(micro, 'train_micro_batch_size_per_gpu');
  if (accum !== undefined && !isAuto(accum)) s.gradAccum = num(accum, 'gradient_accumulation_steps');
  let trainBatchSize: number | undefined;
  if (ds.train_batch_size !== undefined && !isAuto(ds.train_batch_size)) {
    const total = (trainBatchSize = num(ds.train_batch_size, 'train_batch_size'));
    if (s.batchSize && s.gradAccum && s.batchSize * s.gradAccum * world !== total)
      throw new Error(`${file}: train_batch_size ${total} != train_micro_batch_size_per_gpu ${s.batchSize} x gradient_accumulation_steps ${s.gradAccum} x ${world} process(es)`);
    if (s.batchSize && accum === undefined) s.gradAccum = total / (s.batchSize * world);
    else if (micro === undefined) s.batchSize = total / ((s.gradAccum ?? 1) * world);
  }
  if (ds.gradient_clipping !== undefined && !isAuto(ds.gradient_clipping)) s.clip = num(ds.gradient_clipping, 'gradient_clipping');
  const fp16 = ds.fp16 === undefined ? null : obj(ds.fp16, 'fp16');
  const bf16 = ds.bf16 === undefined ? null : obj(ds.bf16, 'bf16');
  if (fp16?.enabled === true && bf16?.enabled === true) throw new Error(`${file}: fp16 and bf16 cannot both be enabled`);
  if (fp16 && (fp16.enabled === true || isAuto(fp16.enabled))) {
    if (fp16.enabled === true) s.dtype = 'fp16'; // "auto": --dtype decides, the scaler settings hold when it is fp16
    s.lossScaler = {
      lossScale: fp16.loss_scale === undefined ? 0 : num(fp16.loss_scale, 'fp16.loss_scale'),
      initialScalePower: fp16.initial_scale_power === undefined ? 16 : num(fp16.initial_scale_power, 'fp16.initial_scale_power'),
      lossScaleWindow: fp16.loss_scale_window === undefined ? 1000 : num(fp16.loss_scale_window, 'fp16.loss_scale_window'),
      hysteresis: fp16.hysteresis === undefined ? 2 : num(fp16.hysteresis, 'fp16.hysteresis'),
      minLossScale: fp16.min_loss_scale === undefined ? 1 : num(fp16.min_loss_scale, 'fp16.min_loss_scale'),
      consecutiveHysteresis: fp16.consecutive_hysteresis === true,
    };
  }
  if (bf16?.enabled === true) s.dtype = 'bf16';
  if (ds.optimizer !== undefined) {
    const o = obj(ds.optimizer, 'optimizer');
    const type = String(o.type ?? '').toLowerCase();
    const map: Record<string, RunSettings['optimizer']> = { adamw: 'adamw', adam: 'adamw', sgd: 'sgd', lion: 'lion' };
    if (!map[type]) throw new Error(`${file}: optimizer type '${String(o.type)}' is not supported (AdamW, Adam, SGD, Lion)`);
    if (type === 'adam') warnings.push(`${file}: optimizer Adam runs as AdamW (decoupled weight decay)`);
    s.optimizer = map[type];
    const p = o.params === undefined ? {} : obj(o.params, 'optimizer.params');
    if (p.lr !== undefined && !isAuto(p.lr)) s.lr = num(p.lr, 'optimizer.params.lr');
    if (p.weight_decay !== undefined && !isAuto(p.weight_decay)) s.weightDecay = num(p.weight_decay, 'optimizer.params.weight_decay');
    if (p.eps !== undefined && !isAuto(p.eps)) s.eps = num(p.eps, 'optimizer.params.eps');
    if (p.betas !== undefined && !isAuto(p.betas)) {
      const b = p.betas;
      if (!Array.isArray(b) || b.length !== 2) throw new Error(`${file}: 'optimizer.params.betas' must be [beta1, beta2]`);
      s.betas = [num(b[0], 'optimizer.params.betas[0]'), num(b[1], 'optimizer.params.betas[1]')];
    }
  }
  if (ds.scheduler !== undefined) {
    const o = obj(ds.scheduler, 'scheduler');
    const type = o.type;
    if (type !== 'WarmupLR' && type !== 'WarmupDecayLR' && type !== 'WarmupCosineLR')
      throw new Error(`${file}: scheduler type '${String(type)}' is not supported (WarmupLR, WarmupDecayLR, WarmupCosineLR)`);
    s.schedule = { type, warmup: 0, params: (o.params === undefined ? {} : obj(o.params, 'scheduler.params')) as Record<string, number | string> };
  }
  if (ds.activation_checkpointing !== undefined) s.checkpointing = 'full';
  if (ds.sparse_attention !== undefined) s.sparseAttention = parseSparsityConfig(ds.sparse_attention, `${file}: sparse_attention`);
  checkSettings(s, (k) => `${file}: '${DS_FIELDS[k] ?? k}'`);
  return { settings: s, warnings, ...(trainBatchSize === undefined ? {} : { trainBatchSize }) };
}
