// Continuous batching (Orca's iteration-level scheduling, vLLM's paged cache): one scheduler loop
// runs one forward per step over every running sequence of a (model, adapter) group: one decode
// token each, plus prompt chunks of at most prefillChunk tokens in all, so a long prompt never
// stalls the streams. Jobs join at the next step and leave when done; a finished or disconnected
// one frees its KV blocks at once. A job is admitted only when the pool can hold every row's
// prompt + max_tokens (so running sequences never run out of blocks); until then it waits in a
// queue with a limit (beyond it 429). Jobs admitted together start in one step, and a row whose
// next prompt block another row is computing waits for it and reuses it. Sampling is per row: its
// draws depend on its seed, row and step only, so batching changes no result. Models without
// paged kernels or a decoder go through a SerialEngine.
import { setImmediate as nextTurn } from 'node:timers/promises';
import { pickToken, resolveGenerateOptions, rowUniform, type ResolvedGenerateOptions } from '../infer/generate.js';
import { pagedStep, type StepInput } from '../infer/paged_step.js';
import { logSoftmax } from '../infer/sampling.js';
import { adapterNames, setAdapter } from '../lora/peft.js';
import { CausalLM, type LanguageModel } from '../models/causal_lm.js';
import { prefixHashes } from '../models/block_allocator.js';
import { PagedKVCache, type PagedSequence } from '../models/paged_kv_cache.js';
import { backendOf } from '../backend/index.js';
import { type Engine, type EngineStats, type GenerationJob, type JobStep, SerialEngine, type TokenLogprob, topLogprobs } from './engine.js';
import { ApiError } from './errors.js';

export interface BatchingOptions {
  /** jobs that may wait for room (beyond: 429) */
  maxQueue: number;
  /** the KV pool of each model, in MB (float32 keys and values) */
  kvCacheMb: number;
  /** tokens per KV block */
  blockSize: number;
  /** prompt tokens per step, over all prefilling sequences */
  prefillChunk: number;
  /** sequences (rows) running at once */
  maxBatch: number;
  /** called after every step with where its time went (profiling: bench/serve_step.ts) */
  onStep?: (t: StepTiming) => void;
}

export interface StepTiming {
  /** rows that fed one token and picked their next one */
  decodeRows: number;
  /** prompt tokens fed (prefill chunks) */
  prefillTokens: number;
  /** the forward (pagedStep), and the token choice of every row that asked for logits */
  forwardMs: number;
  chooseMs: number;
}

interface Row {
  index: number;
  prompt: number[];
  /** prompt + generated: what the repetition penalty sees and prefix hashes cover */
  tokens: number[];
  generated: number[];
  logprobs: TokenLogprob[];
  seq: PagedSequence;
  /** the chained hashes of the prompt's full blocks before its last token (what prefix reuse matches) */
  hashes: string[];
  /** scheduled at least once: it computes its own prompt blocks from then on */
  started: boolean;
  finished: boolean;
}

interface Running {
  job: GenerationJob;
  r: ResolvedGenerateOptions;
  seed: number;
  rows: Row[];
  group: string;
  /** steps ready for the client, and how many were made */
  steps: JobStep[];
  emitted: number;
  done: boolean;
  /** why the engine ended it (a failed step), thrown to its consumer */
  error: Error | null;
  wake: (() => void) | null;
}

/**
 * The prompt block hashes that started rows still prefilling will compute. A row that has not
 * started and whose next block is among them waits a step and then reuses it: prefix caching shares
 * only computed blocks, so rows admitted together (the n choices of a request, clients arriving at
 * once) would otherwise each compute the same blocks.
 */
function blocksBeingComputed(rows: readonly Row[]): Set<string | undefined> {
  const out = new Set<string | undefined>();
  for (const row of rows)
    if (row.started && !row.finished && row.seq.cached < row.prompt.length) for (const h of row.hashes.slice(row.seq.hashed)) out.add(h);
  return out;
}

export class BatchingEngine implements Engine {
  private readonly caches = new Map<LanguageModel, PagedKVCache>();
  private readonly waiting: Running[] = [];
  private readonly running: Running[] = [];
  private readonly serial: SerialEngine;
  private readonly lastServed = new Map<string, number>();
  /** a number per model, for the group keys */
  private readonly modelIds = new Map<LanguageModel, number>();
  private nextModelId = 0;
  /** the adapter this engine set on each model in the current busy period (cleared when it idles) */
  private readonly adapterSet = new Map<LanguageModel, string | null>();
  private stepCount = 0;
  private looping = false;

  constructor(readonly o: BatchingOptions) {
    this.serial = new SerialEngine(o.maxQueue);
  }

  stats(): EngineStats {
    const s = this.serial.stats();
    let used = 0;
    let total = 0;
    for (const c of this.caches.values()) {
      used += c.allocator.used;
      total += c.numBlocks;
    }
    return { queued: this.waiting.length + s.queued, running: this.running.length + s.running, kvBlocksUsed: used, kvBlocksTotal: total };
  }

  releaseModel(model: LanguageModel): void {
    if (this.running.some((j) => j.job.model === model) || this.waiting.some((j) => j.job.model === model))
      throw new Error('BatchingEngine: a model with running or waiting jobs cannot be released');
    this.caches.get(model)?.dispose();
    this.caches.delete(model);
    this.modelIds.delete(model);
    this.adapterSet.delete(model);
  }

  /** The model's paged cache (made at its first job), or null when it must run serially. */
  private cacheOf(model: LanguageModel): PagedKVCache | null {
    const have = this.caches.get(model);
    if (have) return have;
    const backend = backendOf(model.parameters()[0]);
    if (!(model instanceof CausalLM) || !backend.paged) return null;
    const c = model.config;
    const cache = PagedKVCache.withBudget({ numLayers: c.numLayers, numKvHeads: c.numKvHeads, headDim: c.headDim }, this.o.kvCacheMb, this.o.blockSize, backend.name);
    this.caches.set(model, cache);
    return cache;
  }

  submit(job: GenerationJob): AsyncGenerator<JobStep> {
    const cache = this.cacheOf(job.model);
    if (!cache) return this.serial.submit(job);
    const r = resolveGenerateOptions(job.model, job.options);
    if (job.rows.length > this.o.maxBatch)
      throw new ApiError(400, `the request has ${job.rows.length} choices (prompts x n) but at most ${this.o.maxBatch} sequences run at once (--max-batch)`, 'n');
    const need = job.rows.reduce((s, p) => s + cache.blocksFor(p.length + r.maxNewTokens), 0);
    if (need > cache.numBlocks)
      throw new ApiError(400, `the request needs ${need} KV blocks of ${cache.blockSize} tokens (prompt + max_tokens per choice) but the cache holds ${cache.numBlocks} (--kv-cache-mb ${this.o.kvCacheMb}); ask for fewer tokens`, 'max_tokens');
    // one forward serves one model with one adapter: jobs are grouped by both
    if (!this.modelIds.has(job.model)) this.modelIds.set(job.model, this.nextModelId++);
    const group = `${this.modelIds.get(job.model)}:${job.adapter ?? ''}`;
    const run: Running = { job, r, seed: job.options.seed ?? 0, rows: [], group, steps: [], emitted: 0, done: false, error: null, wake: null };
    if (!this.waiting.length && this.admit(run, cache)) this.kick();
    else if (this.waiting.length >= this.o.maxQueue)
      throw new ApiError(429, `the server is busy: ${this.waiting.length} requests are queued (--max-queue ${this.o.maxQueue}); retry later`, null, 'queue_full');
    else this.waiting.push(run);
    job.signal.addEventListener('abort', () => this.drop(run), { once: true });
    return this.stream(run);
  }

  /** Blocks that running rows may still take (promised at admission, not yet allocated). */
  private promised(cache: PagedKVCache): number {
    let n = 0;
    for (const j of this.running)
      if (this.caches.get(j.job.model) === cache)
        for (const row of j.rows) if (!row.finished) n += cache.blocksFor(row.prompt.length + j.r.maxNewTokens) - row.seq.blocks.length;
    return n;
  }

  /** Starts the job now if the batch and the pool have room for all its rows; false leaves it untouched. */
  private admit(run: Running, cache: PagedKVCache): boolean {
    const live = this.running.reduce((s, j) => s + j.rows.filter((x) => !x.finished).length, 0);
    if (live + run.job.rows.length > this.o.maxBatch) return false;
    const promised = this.promised(cache);
    const salt = run.job.adapter ?? '';
    // reusing a cached prefix takes its blocks out of `available` (when nobody held them)
    const seqs = run.job.rows.map((p) => cache.open(p, salt));
    const need = run.job.rows.reduce((s, p, i) => s + cache.blocksFor(p.length + run.r.maxNewTokens) - seqs[i].blocks.length, 0);
    if (need > cache.allocator.available - promised) {
      for (const q of seqs) cache.close(q);
      return false;
    }
    run.rows = run.job.rows.map((p, i) => ({
      index: i, prompt: p, tokens: p.slice(), generated: [], logprobs: [], seq: seqs[i], hashes: prefixHashes(p.slice(0, p.length - 1), cache.blockSize, salt), started: false, finished: false,
    }));
    this.running.push(run);
    return true;
  }

  private kick(): void {
    if (this.looping) return;
    this.looping = true;
    void this.loop();
  }

  private async loop(): Promise<void> {
    try {
      // first a turn of the event loop: requests that arrived together are all admitted, so their
      // prompts share the first step (one batched prefill) instead of the first one running alone
      await nextTurn();
      while (this.running.length) {
        try {
          this.step();
        } catch (e) {
          // a step that throws ends every running job with the error (their blocks freed), never the server
          for (const job of [...this.running]) {
            job.error = e as Error;
            this.drop(job);
          }
        }
        // the model's steps are synchronous: give the event loop a turn (new requests, disconnects, /metrics)
        await nextTurn();
        this.admitWaiting();
      }
    } finally {
      this.looping = false;
      this.adapterSet.clear();
    }
  }

  private admitWaiting(): void {
    while (this.waiting.length) {
      const next = this.waiting[0];
      if (!this.admit(next, this.caches.get(next.job.model)!)) return;
      this.waiting.shift();
    }
  }

  /** One forward over the group served longest ago. */
  private step(): void {
    const groups = [...new Set(this.running.map((j) => j.group))];
    const group = groups.reduce((a, b) => ((this.lastServed.get(a) ?? -1) <= (this.lastServed.get(b) ?? -1) ? a : b));
    this.lastServed.set(group, this.stepCount++);
    const jobs = this.running.filter((j) => j.group === group);
    const model = jobs[0].job.model;
    const cache = this.caches.get(model)!;
    this.useAdapter(model, jobs[0].job.adapter);
    const inputs: (StepInput & { job: Running; row: Row })[] = [];
    let budget = this.o.prefillChunk;
    const computing = blocksBeingComputed(jobs.flatMap((j) => j.rows));
    for (const job of jobs)
      for (const row of job.rows) {
        if (row.finished) continue;
        if (!row.started) {
          if (computing.has(row.hashes[row.seq.blocks.length])) continue; // another row is computing its next block: reuse it next step
          this.reopen(row, cache, job.job.adapter ?? '');
          for (const h of row.hashes.slice(row.seq.blocks.length)) computing.add(h);
        }
        const todo = row.tokens.length - row.seq.cached; // 1 when decoding, the rest of the prompt when prefilling
        const count = todo === 1 ? 1 : Math.min(todo, budget);
        if (count <= 0) continue;
        if (todo > 1) budget -= count;
        cache.reserve(row.seq, row.seq.cached + count);
        inputs.push({ seq: row.seq, tokens: row.tokens.slice(row.seq.cached, row.seq.cached + count), wantLogits: count === todo, job, row });
      }
    if (!inputs.length) return;
    const t0 = performance.now();
    const logits = pagedStep(model, cache, inputs);
    const t1 = performance.now();
    let li = 0;
    for (const x of inputs) {
      cache.commit(x.seq, x.row.tokens);
      if (x.wantLogits) this.choose(x.job, x.row, logits[li++], cache);
    }
    for (const job of jobs) this.flush(job);
    if (this.o.onStep) {
      const decodeRows = inputs.filter((x) => x.tokens.length === 1 && x.wantLogits).length;
      const fed = inputs.reduce((a, x) => a + x.tokens.length, 0);
      this.o.onStep({ decodeRows, prefillTokens: fed - decodeRows, forwardMs: t1 - t0, chooseMs: performance.now() - t1 });
    }
  }

  /**
   * Activates the group's adapter. An adapter step always sets it (loading another adapter between
   * steps leaves none active). A base-model step skips the module-tree walks (~1-2 ms per step at 30
   * layers) once this engine has deactivated adapters in the current busy period: nothing else
   * activates one between steps without restoring it (the registry and /v1/embeddings do not).
   */
  private useAdapter(model: LanguageModel, adapter: string | null): void {
    if (adapter === null && this.adapterSet.get(model) === null) return;
    if (adapter !== null || adapterNames(model).length) setAdapter(model, adapter);
    this.adapterSet.set(model, adapter);
  }

  /** A row about to start takes every prompt block cached by now (rows admitted with it may have computed some). */
  private reopen(row: Row, cache: PagedKVCache, salt: string): void {
    cache.close(row.seq);
    row.seq = cache.open(row.prompt, salt);
    row.started = true;
  }

  /** Picks a row's next token (its own draw), records it and finishes the row on eos, stop or length. */
  private choose(job: Running, row: Row, scores: Float32Array, cache: PagedKVCache): void {
    const { r } = job;
    const u = r.doSample ? rowUniform(job.seed, job.rows.length, row.index, row.generated.length) : 0;
    const t = pickToken(scores, r, { row: row.index, seen: row.tokens, generated: row.generated, finished: false, u, logitsProcessor: job.job.options.logitsProcessor })!;
    if (job.job.topLogprobs !== null) row.logprobs.push(topLogprobs(logSoftmax(scores), t, job.job.topLogprobs));
    row.tokens.push(t);
    row.generated.push(t);
    const o = job.job.options;
    const stop = r.eos.includes(t) || row.generated.length >= r.maxNewTokens ||
      (!!o.stopStrings?.length && !!o.decode && o.stopStrings.some((s) => o.decode!(row.generated).includes(s)));
    if (stop) this.finishRow(row, cache);
  }

  private finishRow(row: Row, cache: PagedKVCache): void {
    row.finished = true;
    cache.close(row.seq);
  }

  /** Hands the job every step all its rows have reached (finished rows give the pad token). */
  private flush(job: Running): void {
    const { pad } = job.r;
    const reached = (row: Row, s: number): boolean => row.generated.length > s || row.finished;
    while (job.rows.some((row) => row.generated.length > job.emitted) && job.rows.every((row) => reached(row, job.emitted))) {
      const s = job.emitted++;
      job.steps.push({
        tokens: job.rows.map((row) => row.generated[s] ?? pad),
        logprobs: job.job.topLogprobs !== null ? job.rows.map((row) => row.logprobs[s] ?? { logprob: 0, top: [] }) : null,
      });
    }
    if (job.rows.every((row) => row.finished)) this.end(job);
    job.wake?.();
  }

  private end(job: Running): void {
    job.done = true;
    const i = this.running.indexOf(job);
    if (i >= 0) this.running.splice(i, 1);
  }

  /** The client went away (or stopped reading): leaves the queue, or frees its rows' blocks at once. */
  private drop(job: Running): void {
    const w = this.waiting.indexOf(job);
    if (w >= 0) this.waiting.splice(w, 1);
    const cache = this.caches.get(job.job.model);
    if (cache) for (const row of job.rows) if (!row.finished) this.finishRow(row, cache);
    this.end(job);
    job.wake?.();
    this.admitWaiting();
    if (this.running.length) this.kick();
  }

  private async *stream(job: Running): AsyncGenerator<JobStep> {
    try {
      for (;;) {
        const next = job.steps.shift();
        if (next) {
          yield next;
          continue;
        }
        if (job.error) throw job.error;
        if (job.done || job.job.signal.aborted) return;
        await new Promise<void>((wake) => (job.wake = wake));
        job.wake = null;
      }
    } finally {
      if (!job.done) this.drop(job);
    }
  }
}
