// The training loop: micro-batches with token-normalised gradient accumulation, a schedule,
// clipping, periodic eval and checkpoints, exact resume, one metrics.jsonl line per optimizer
// step, a progress line with rate and ETA, and callbacks for the strategies built on it.
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Batch, BatchOptions } from '../data/index.js';
import { CausalLM } from '../models/causal_lm.js';
import { resumeSparsity, saveSparsity } from '../models/sparse_attention.js';
import type { Module } from '../nn/module.js';
import { AdamW } from '../optim/adamw.js';
import { gradNorm, scaleGrads } from '../optim/clip.js';
import { OptimizerInBackward } from '../optim/in_backward.js';
import { LossScaler, type LossScalerOptions } from '../optim/loss_scaler.js';
import type { Optimizer } from '../optim/optimizer.js';
import type { Schedule } from '../optim/schedules.js';
import { constant } from '../optim/schedules.js';
import { memory } from '../tensor/memory.js';
import { defaultGenerator } from '../tensor/rng.js';
import { isMeta } from '../tensor/meta.js';
import type { Tensor } from '../tensor/tensor.js';
import { type TrainerState, listCheckpoints, loadCheckpoint, loadShardedCheckpoint, removeStaleTemps, saveCheckpoint, truncateLog } from './checkpoint.js';
import { copyInto, isSharded, manifestShards, plainShards, readManifest, reassemble, saveShardedCheckpoint, stateTensors } from './sharded_checkpoint.js';
import type { SafetensorsFile } from '../io/safetensors.js';
import { onInterrupt, yieldToEventLoop } from './interrupt.js';
import { type AccumulateOptions, type StepResult, type TrainStep, causalLMStep } from './step.js';
import { decayParamGroups } from './param_groups.js';
import { useOptimizerInBackward } from './in_backward.js';
import { progressBar } from './progress.js';
import type { DataParallel } from './data_parallel.js';
import { resetExpertLoads, takeExpertLoadMetrics } from './moe_metrics.js';

export interface StepMetrics {
  step: number;
  loss: number;
  lr: number;
  grad_norm: number;
  loss_scale: number | null;
  tokens_per_sec: number;
  mem_peak: { total: number; param: number; grad: number; optimizer: number; activation: number; other: number };
  /** the step strategy's own metrics (TRL's names), logged beside the others in metrics.jsonl */
  metrics?: Record<string, number>;
  /** MoE models: slots routed to each expert this step, per layer (moe_metrics.ts) */
  expert_counts?: Record<string, number[]>;
  /** MoE models: max/mean of each layer's expert counts */
  expert_imbalance?: Record<string, number>;
}

/** What the Trainer reads data from: seeded, resumable batches per epoch (Dataset, or a method's own). */
export interface BatchSource<B> {
  batches(opts: BatchOptions): Iterable<B>;
}

export interface TrainerOptions<B = Batch> {
  /** a CausalLM (trained on its LM loss), or any module with a `step` that says how */
  model: Module;
  data: BatchSource<B>;
  evalData?: BatchSource<B> | null;
  /** forward/backward of a step's micro-batches; default causalLMStep(model) (model must be a CausalLM) */
  step?: TrainStep<B>;
  optimizer?: Optimizer<{ lr: number }>;
  /** learning rate by step (default: constant lr) */
  schedule?: Schedule;
  lr?: number;
  batchSize: number;
  gradAccum?: number;
  maxSteps: number;
  /** clip the global gradient norm (0 = off) */
  clip?: number;
  /**
   * update each parameter inside backward as soon as its gradient is final, then free that
   * gradient (LOMO; torch's post-accumulate-grad hook recipe), so a step never holds every
   * gradient at once; fp32 weights equal the ordinary step's bit for bit. Needs gradAccum 1, no
   * clip and no fp16 loss scaler: true makes those an error, 'auto' falls back to the ordinary
   * step for them. A non-finite gradient stops the updates where it appears, but the parameters
   * whose gradients came before it are already updated (the run then stops, as it does for a
   * NaN loss, which is caught before backward with nothing updated). Data-parallel ranks block it too.
   * Default false (`kestrel train`: 'auto').
   */
  optimizerInBackward?: boolean | 'auto';
  outputDir?: string;
  saveEvery?: number;
  keepLast?: number;
  evalEvery?: number;
  evalBatches?: number;
  /** a checkpoint folder to continue from exactly */
  resumeFrom?: string;
  progress?: boolean;
  backend?: string;
  /** compute precision: bf16/fp16 matmuls with float32 master weights and optimizer state */
  dtype?: 'fp32' | 'bf16' | 'fp16';
  /** fp16 loss scaling (DeepSpeed's fp16 section); dynamic by default */
  lossScaler?: LossScalerOptions;
  /**
   * data-parallel training (src/dist/ddp.ts): each step takes gradAccum micro-batches per rank
   * (gradAccum × worldSize in all, rank r the r-th share), gradients are summed over ranks, and
   * only rank 0 logs, prints progress and saves
   */
  dataParallel?: DataParallel | null;
  onStep?: (m: StepMetrics) => void;
  onEval?: (r: { step: number; loss: number; metrics?: Record<string, number> }) => void;
  onSave?: (dir: string) => void;
}

export class Trainer<B = Batch> {
  readonly optimizer: Optimizer<{ lr: number }>;
  readonly schedule: Schedule;
  step = 0;
  private epoch = 0;
  private epochStep = 0;
  private stopping = false;
  /** set when a signal (or stop()) ended the run before maxSteps */
  interrupted = false;
  /** the last checkpoint written or resumed from */
  lastCheckpoint: string | null = null;
  /** fp16 only */
  readonly scaler: LossScaler | null;
  /** set when optimizerInBackward is on for this run */
  readonly inBackward: OptimizerInBackward | null;
  private readonly stepper: TrainStep<B>;

  constructor(readonly o: TrainerOptions<B>) {
    if (!o.step && !(o.model instanceof CausalLM)) throw new Error('Trainer: a model that is not a CausalLM needs a step strategy (options.step) that says how it is trained');
    // without a step, B is Batch (a Dataset of token rows): the causal-LM step reads it
    this.stepper = o.step ?? (causalLMStep(o.model as CausalLM) as TrainStep<unknown> as TrainStep<B>);
    this.optimizer = o.optimizer ?? new AdamW(decayParamGroups(o.model, 0.01), { lr: o.lr ?? 1e-3 });
    this.schedule = o.schedule ?? constant(o.lr ?? 1e-3);
    this.scaler = o.dtype === 'fp16' ? new LossScaler(o.lossScaler) : null;
    this.inBackward = useOptimizerInBackward({ ...o, worldSize: o.dataParallel?.worldSize }) ? new OptimizerInBackward(this.optimizer) : null;
    if (o.dataParallel && o.dataParallel.worldSize > 1 && !this.stepper.targetTokens)
      throw new Error('Trainer: data-parallel training needs a step strategy with targetTokens() (the causal-LM step has it)');
    if (o.outputDir && this.isMain) {
      removeStaleTemps(o.outputDir); // what saves interrupted by a kill left behind
      this.lastCheckpoint = listCheckpoints(o.outputDir).at(-1)?.path ?? null;
    }
    if (o.resumeFrom) this.resume(o.resumeFrom);
  }

  /** rank 0 of a data-parallel run, or the only process: the one that logs, prints and saves */
  get isMain(): boolean {
    return (this.o.dataParallel?.rank ?? 0) === 0;
  }

  /** Asks the loop to save a checkpoint and stop after the current step (Ctrl-C does this). */
  stop(): void {
    this.stopping = true;
    this.interrupted = true;
  }

  /** The next micro-batch, moving to the next epoch when one is exhausted. */
  private *microBatches(): Generator<B> {
    const { data, batchSize } = this.o;
    for (;;) {
      for (const b of data.batches({ batchSize, epoch: this.epoch, startStep: this.epochStep })) {
        this.epochStep++;
        yield b;
      }
      this.epoch++;
      this.epochStep = 0;
    }
  }

  /**
   * Runs to maxSteps. Awaits one event-loop turn per step so that Ctrl-C (SIGINT/SIGTERM) can
   * stop it: the step in flight finishes, a checkpoint is saved and `interrupted` is set.
   */
  async train(): Promise<StepMetrics[]> {
    const { model, maxSteps } = this.o;
    model.train();
    const metrics: StepMetrics[] = [];
    const batches = this.microBatches();
    const release = onInterrupt(() => this.stop(), this.o.outputDir ? 'finishing this step and saving a checkpoint' : 'stopping after this step');
    const t0 = performance.now();
    const startStep = this.step;
    let saved = -1;
    try {
      while (this.step < maxSteps && !this.stopping) {
        const m = await this.trainStep(batches);
        metrics.push(m);
        this.log(m);
        this.o.onStep?.(m);
        this.progress(startStep, t0, m);
        if (this.o.evalData && this.o.evalEvery && this.step % this.o.evalEvery === 0) this.evaluate();
        if (this.o.outputDir && this.o.saveEvery && this.step % this.o.saveEvery === 0) (await this.saveAll(), (saved = this.step));
        await yieldToEventLoop();
      }
      if (this.stopping && this.o.outputDir && saved !== this.step) await this.saveAll();
    } finally {
      release();
      if (this.o.progress) process.stderr.write('\n');
    }
    return metrics;
  }

  /** One optimizer step over gradAccum micro-batches (per rank); a NaN loss stops the run before the update. */
  private async trainStep(batches: Generator<B>): Promise<StepMetrics> {
    const { model, gradAccum = 1 } = this.o;
    const lr = this.schedule(this.step);
    this.optimizer.setLr(lr);
    memory.resetPeak();
    resetExpertLoads(model); // evaluation forwards since the last step do not count
    const tStep = performance.now();
    const world = this.o.dataParallel?.worldSize ?? 1;
    const all = Array.from({ length: gradAccum * world }, () => batches.next().value as B);
    const rank = this.o.dataParallel?.rank ?? 0;
    const drawn = all.slice(rank * gradAccum, (rank + 1) * gradAccum);
    const micro = this.stepper.prepare ? await this.stepper.prepare(drawn) : drawn;
    const params = model.parameters().filter((p) => p.requiresGrad);
    const scale = this.scaler?.scale ?? 1;
    const updates = this.stepper.updates ? this.stepper.updates(micro) : [micro];
    if (updates.length === 0) throw new Error(`step ${this.step + 1}: the step strategy planned no optimizer updates`);
    // the global batch's target tokens normalise every rank's loss (counted once per step)
    const globalTokens = world > 1 ? this.stepper.targetTokens?.(all) : undefined;
    const done: { result: StepResult; norm: number }[] = [];
    for (const u of updates) {
      done.push(this.inBackward ? this.updateInBackward(u, params)
        : await this.updateAfterBackward(u, params, this.scaler?.scale ?? 1, globalTokens));
      this.optimizer.zeroGrad();
      // under ZeRO the optimizer holds shards: the model's own gradients are cleared here
      if (this.o.dataParallel) for (const p of params) p.zeroGrad();
    }
    const { result, norm } = done.length === 1 ? done[0] : meanOfUpdates(done);
    this.step++;
    const load = takeExpertLoadMetrics(model);
    const metrics = load ? { ...result.metrics, ...load.metrics } : result.metrics;
    return {
      step: this.step, loss: result.loss, lr, grad_norm: norm, loss_scale: this.scaler ? scale : null,
      tokens_per_sec: result.tokens / ((performance.now() - tStep) / 1e3),
      mem_peak: memory.stats().peak,
      ...(metrics ? { metrics } : {}),
      ...(load ? { expert_counts: load.expert_counts, expert_imbalance: load.expert_imbalance } : {}),
    };
  }

  private autocastTo(): 'bfloat16' | 'float16' | null {
    return this.o.dtype === 'bf16' ? 'bfloat16' : this.o.dtype === 'fp16' ? 'float16' : null;
  }

  /** The error for a diverged step (NaN/inf loss or gradient), naming the last good checkpoint. */
  private diverged(what: string, model: string): Error {
    this.optimizer.zeroGrad();
    const last = this.lastCheckpoint ? `; the last good checkpoint is ${this.lastCheckpoint}` : '';
    return new Error(`step ${this.step + 1}: ${what} (diverged: try a lower --lr or --clip); ${model}${last}`);
  }

  /** The ordinary step: backward over every micro-batch, then unscale, clip and update. */
  private accumulate(micro: B[], opts: AccumulateOptions) {
    return this.stepper.accumulate(micro, { backend: this.o.backend, autocast: this.autocastTo(), ...opts });
  }

  private async updateAfterBackward(micro: B[], params: Tensor[], scale: number, globalTokens?: number): Promise<{ result: StepResult; norm: number }> {
    const dp = globalTokens === undefined ? null : this.o.dataParallel ?? null;
    let backwards = 0;
    // data parallel: the last micro-batch's backward reduces gradients as they complete (none on the earlier ones)
    const beforeBackward = dp ? () => void (++backwards === micro.length && dp.arm(params)) : undefined;
    const result = this.accumulate(micro, { lossScale: scale, normalizeTokens: globalTokens, beforeBackward });
    if (dp) {
      await dp.finish(params);
      [result.loss, result.tokens] = await dp.sum([result.loss, result.tokens]);
    }
    const { loss } = result;
    let norm = dp ? await dp.gradNorm(params) : gradNorm(params);
    const overflow = !Number.isFinite(norm) || !Number.isFinite(loss);
    // without a loss scaler a NaN/inf is not an overflow to skip but a diverged run: stop
    // before the update, so the model in memory and every checkpoint stay finite
    if (overflow && !this.scaler)
      throw this.diverged(Number.isFinite(loss) ? `the gradient norm is ${norm}` : `the loss is ${loss}`, 'the model was not updated');
    const skip = this.scaler ? this.scaler.update(overflow, this.step + 1) : false;
    if (!skip) {
      // ZeRO >= 2 keeps each rank's share of the gradient with the strategy, not in .grad
      const scaleBy = (f: number): void => (dp ? dp.scaleGrads(params, f) : scaleGrads(params, f));
      if (scale !== 1) {
        scaleBy(1 / scale);
        norm /= scale;
      }
      if (this.o.clip && norm > this.o.clip) scaleBy(this.o.clip / (norm + 1e-6));
      dp?.beforeOptimizerStep();
      this.optimizer.step();
      await dp?.afterOptimizerStep();
    }
    return { result, norm };
  }

  /**
   * Optimizer in backward: each parameter is updated as its gradient completes and the gradient
   * freed; the global norm (for the log) is summed from the per-gradient terms in gradNorm's order.
   */
  private updateInBackward(micro: B[], params: Tensor[]): { result: StepResult; norm: number } {
    const r = this.inBackward!.step(() => this.accumulate(micro, {
      beforeBackward: (sum) => {
        if (!Number.isFinite(sum)) throw this.diverged(`the loss is ${sum}`, 'the model was not updated');
      },
    }));
    const norm = Math.sqrt(params.reduce((s, p) => s + (r.squaredNorms.get(p) ?? 0), 0));
    if (r.nonFinite) {
      const name = this.o.model.namedParameters().find(([, p]) => p === r.nonFinite)?.[0];
      throw this.diverged(`the gradient norm is ${norm}`, r.updated
        ? `optimizer in backward had already updated ${r.updated} of ${params.length} parameters before the first non-finite gradient (${name})`
        : 'the model was not updated');
    }
    return { result: r.value, norm };
  }

  /** The step strategy's eval loss (SFT: mean loss per target token) over (up to evalBatches) eval batches. */
  evaluate(): number {
    const ds = this.o.evalData;
    if (!ds) throw new Error('evaluate: no evalData');
    const { model } = this.o;
    model.eval();
    const { evalBatches, batchSize } = this.o;
    const all = ds.batches({ batchSize, shuffle: false });
    const limited = evalBatches ? (function* () {
      let n = 0;
      for (const b of all) if (n++ < evalBatches) yield b; else return;
    })() : all;
    let r: { loss: number; metrics?: Record<string, number> };
    try {
      r = this.stepper.evaluate(limited);
    } finally {
      model.train();
    }
    this.o.onEval?.({ step: this.step, loss: r.loss, metrics: r.metrics });
    if (!this.isMain) return r.loss;
    const prefixed = Object.fromEntries(Object.entries(r.metrics ?? {}).map(([n, v]) => [`eval_${n}`, v]));
    if (this.o.outputDir) appendFileSync(join(this.o.outputDir, 'eval.jsonl'), JSON.stringify({ step: this.step, eval_loss: r.loss, ...prefixed }) + '\n');
    return r.loss;
  }

  private log(m: StepMetrics): void {
    if (!this.o.outputDir || !this.isMain) return;
    mkdirSync(this.o.outputDir, { recursive: true });
    const { metrics, ...rest } = m;
    appendFileSync(join(this.o.outputDir, 'metrics.jsonl'), JSON.stringify({ ...rest, ...metrics }) + '\n');
  }

  private progress(start: number, t0: number, m: StepMetrics): void {
    if (!this.o.progress || !this.isMain) return;
    const done = this.step - start;
    const rate = done / ((performance.now() - t0) / 1e3);
    const left = (this.o.maxSteps - this.step) / Math.max(rate, 1e-9);
    process.stderr.write(`\r${progressBar(this.step, this.o.maxSteps)} loss ${m.loss.toFixed(4)} ${rate.toFixed(2)} it/s ${Math.round(m.tokens_per_sec)} tok/s ETA ${Math.round(left)}s `);
  }

  /** save() on rank 0 (every rank holds the same weights and optimizer state at ZeRO stage 0), or a sharded checkpoint from every rank under ZeRO */
  private async saveAll(): Promise<void> {
    const dp = this.o.dataParallel;
    const blocker = dp?.checkpointBlocker() ?? null;
    if (blocker) throw new Error(`step ${this.step}: cannot save a checkpoint: ${blocker}`);
    const layout = dp?.shardLayout() ?? null;
    if (!dp || !layout) return void (this.isMain && this.save());
    const names = new Map(this.o.model.namedParameters().filter(([, p]) => p.requiresGrad).map(([n, p]) => [p, n]));
    const path = await saveShardedCheckpoint({
      // ZeRO-3's partitioned layers are placeholders here: their values are in the shards only
      outputDir: this.o.outputDir!, dp, layout, names, optimizer: this.optimizer, model: () => withoutMeta(checkpointedState(this.o.model)),
      state: this.trainerState(this.optimizer.stateDict().step), keepLast: this.o.keepLast ?? 0,
    });
    this.lastCheckpoint = path;
    if (this.isMain) this.o.onSave?.(path);
  }

  private trainerState(optimizerStep: number): TrainerState {
    return { step: this.step, epoch: this.epoch, epochStep: this.epochStep, rng: defaultGenerator.getState(), lossScaler: this.scaler?.stateDict() ?? null, optimizerStep };
  }

  /** Writes checkpoint-<step> (model, optimizer, trainer state) atomically. */
  save(): string {
    const dir = this.o.outputDir;
    if (!dir) throw new Error('save: no outputDir');
    const opt = this.optimizer.stateDict();
    const optTensors: Record<string, Tensor> = {};
    opt.state.forEach((s, i) => Object.entries(s).forEach(([n, t]) => (optTensors[`${i}.${n}`] = t)));
    const path = saveCheckpoint(dir, { model: checkpointedState(this.o.model), optimizer: optTensors, state: this.trainerState(opt.step) }, this.o.keepLast ?? 0);
    if (this.o.model instanceof CausalLM) saveSparsity(path, this.o.model); // the layout beside the weights
    this.lastCheckpoint = path;
    this.o.onSave?.(path);
    return path;
  }

  private resume(dir: string): void {
    if (this.o.model instanceof CausalLM) resumeSparsity(dir, this.o.model);
    const sharded = isSharded(dir);
    const ck = sharded ? loadShardedCheckpoint(dir) : loadCheckpoint(dir);
    try {
      const own = checkpointedState(this.o.model);
      // a ZeRO-3 checkpoint keeps the layers' parameters in its shards only (manifest.tensors names them)
      const inShards = new Set(sharded ? Object.keys(readManifest(dir).tensors) : []);
      const fromShards = Object.keys(own).filter((n) => !ck.model.has(n) && inShards.has(n));
      const missing = Object.keys(own).filter((n) => !ck.model.has(n) && !inShards.has(n));
      const unexpected = ck.model.names.filter((n) => !Object.hasOwn(own, n));
      if (missing.length || unexpected.length)
        throw new Error(`${dir}: the checkpoint's model does not match the one being trained: missing [${missing.join(', ')}], unexpected [${unexpected.join(', ')}]`);
      // this run's ZeRO-3 placeholders take their values from the shards (resumeIntoLayout), not from the model file
      const sd = Object.fromEntries(ck.model.names.filter((n) => !isMeta(own[n])).map((n) => [n, ck.model.tensor(n, { backend: this.o.backend })]));
      this.o.model.loadStateDict(sd, { strict: false });
      for (const t of Object.values(sd)) t.dispose();
      if (sharded || this.o.dataParallel?.shardLayout()) this.resumeIntoLayout(dir, sharded, ck.state.optimizerStep);
      else this.resumeOptimizer(dir, ck.optimizer!, ck.state.optimizerStep);
      const whole = fromShards.filter((n) => !isMeta(own[n]));
      if (whole.length) {
        const values = reassemble(manifestShards(dir, readManifest(dir)), whole.map((n) => ({ length: own[n].numel, pieces: [{ name: n, start: 0, length: own[n].numel, at: 0 }] })), dir);
        whole.forEach((n, i) => copyInto(own[n], values[i].master));
      }
      Object.assign(this, { step: ck.state.step, epoch: ck.state.epoch, epochStep: ck.state.epochStep });
      defaultGenerator.setState(sharded ? (readManifest(dir).ranks[this.o.dataParallel?.rank ?? 0] ?? readManifest(dir).ranks[0]).rng : ck.state.rng);
      if (this.scaler && ck.state.lossScaler) this.scaler.loadStateDict(ck.state.lossScaler);
      this.lastCheckpoint = dir;
      // the logs continue from the checkpoint: lines of steps after it were undone by the resume
      if (this.o.outputDir) for (const f of ['metrics.jsonl', 'eval.jsonl']) truncateLog(join(this.o.outputDir, f), this.step);
    } finally {
      ck.model.close();
      ck.optimizer?.close();
    }
  }

  /** optimizer.safetensors of a plain checkpoint: state tensors named '<parameter index>.<state>' */
  private resumeOptimizer(dir: string, file: SafetensorsFile, step: number): void {
    const n = this.optimizer.groups.reduce((c, g) => c + g.params.length, 0);
    const state: Record<string, Tensor>[] = Array.from({ length: n }, () => ({}));
    for (const name of file.names) {
      const [i, key] = [Number(name.split('.')[0]), name.slice(name.indexOf('.') + 1)];
      if (!(i >= 0 && i < n)) throw new Error(`${dir}: optimizer state '${name}' names parameter ${i} of ${n}`);
      state[i][key] = file.tensor(name, { backend: this.o.backend });
    }
    this.optimizer.loadStateDict({ step, state });
    for (const s of state) for (const t of Object.values(s)) t.dispose();
  }

  /**
   * A checkpoint into this run's layout, whatever the saving run's world size and stage: a sharded
   * (ZeRO) one into ZeRO's shards (master weights and state) or into whole parameters, a plain one
   * (one process, ZeRO-0) into ZeRO's shards.
   */
  private resumeIntoLayout(dir: string, sharded: boolean, step: number): void {
    const layout = this.o.dataParallel?.shardLayout() ?? null;
    const names = new Map(this.o.model.namedParameters().map(([n, p]) => [p, n]));
    const owned = this.optimizer.groups.flatMap((g) => g.params);
    const targets = layout
      ? layout.groups.map((g) => ({ length: g.shard.numel, pieces: g.pieces.map((p) => ({ name: names.get(p.param)!, start: p.start, length: p.length, at: p.at })) }))
      : owned.map((p) => ({ length: p.numel, pieces: [{ name: names.get(p)!, start: 0, length: p.numel, at: 0 }] }));
    const shards = sharded ? manifestShards(dir, readManifest(dir)) : plainShards(dir, layout!.params.map((p) => names.get(p)!));
    const values = reassemble(shards, targets, dir);
    const backend = owned[0]?.backendName ?? 'cpu';
    const state = values.map((v) => stateTensors(v, backend));
    this.optimizer.loadStateDict({ step, state });
    for (const s of state) for (const t of Object.values(s)) t.dispose();
    // ZeRO's float32 masters: the saved ones (equal to the model just loaded, which they were gathered into)
    if (layout) layout.groups.forEach((g, i) => copyInto(g.shard, values[i].master));
  }
}

/** Several updates of one step as one log line: the mean loss, grad norm and metrics, the summed tokens. */
function meanOfUpdates(done: { result: StepResult; norm: number }[]): { result: StepResult; norm: number } {
  const n = done.length;
  const metrics: Record<string, number> = {};
  for (const { result } of done) for (const [k, v] of Object.entries(result.metrics ?? {})) metrics[k] = (metrics[k] ?? 0) + v / n;
  return {
    result: { loss: done.reduce((a, d) => a + d.result.loss, 0) / n, tokens: done.reduce((a, d) => a + d.result.tokens, 0), metrics },
    norm: done.reduce((a, d) => a + d.norm, 0) / n,
  };
}

/** The tensors that have values (ZeRO-3's released layer parameters are meta placeholders). */
function withoutMeta(sd: Record<string, Tensor>): Record<string, Tensor> {
  return Object.fromEntries(Object.entries(sd).filter(([, t]) => !isMeta(t)));
}

/**
 * What a checkpoint keeps of the model: everything for full training, only the trainable
 * parameters when part of it is frozen (LoRA, QLoRA), so checkpoints stay adapter-sized and a
 * resume restores exactly what the optimizer changed.
 */
function checkpointedState(model: Module): Record<string, Tensor> {
  const params = model.namedParameters();
  const trainable = params.filter(([, p]) => p.requiresGrad);
  return trainable.length < params.length ? Object.fromEntries(trainable) : model.stateDict();
}
