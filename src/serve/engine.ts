// The request path between HTTP and the model: an Engine takes a generation job and yields its
// steps. SerialEngine runs one job at a time and queues the rest FIFO up to a limit (beyond it,
// submit throws a 429 with Retry-After); a continuous-batching scheduler is a second Engine with
// the same contract (jobs join a running batch at the next step), so the endpoints never change.
import { setImmediate as nextTurn } from 'node:timers/promises';
import { tensor } from '../ops/creation.js';
import { type GenerateOptions, generateStream } from '../infer/generate.js';
import { logSoftmax } from '../infer/sampling.js';
import { topIndices } from '../infer/top_indices.js';
import { adapterNames, setAdapter } from '../lora/peft.js';
import type { LanguageModel } from '../models/causal_lm.js';
import { ApiError } from './errors.js';

export interface GenerationJob {
  model: LanguageModel;
  /** the LoRA adapter to run (null: the base model) */
  adapter: string | null;
  /** one prompt per output row (the endpoints repeat a prompt n times); lengths may differ */
  rows: number[][];
  /** sampling, eos, stop strings and maxNewTokens, as generateStream takes them */
  options: GenerateOptions;
  /** how many alternatives per position to report with each token's log-probability (null: no logprobs) */
  topLogprobs: number | null;
  /** aborted when the client goes away: a queued job leaves the queue, a running one stops */
  signal: AbortSignal;
}

export interface TokenLogprob {
  logprob: number;
  /** the most likely tokens at this position, best first */
  top: { id: number; logprob: number }[];
}

export interface JobStep {
  /** the token chosen for each row (the pad token for rows that finished) */
  tokens: number[];
  /** per row, when the job asked for logprobs */
  logprobs: TokenLogprob[] | null;
}

export interface EngineStats {
  queued: number;
  running: number;
  /** paged KV cache blocks referenced by running sequences, and in all pools (continuous batching only) */
  kvBlocksUsed?: number;
  kvBlocksTotal?: number;
}

export interface Engine {
  /** throws ApiError 429 when the queue is full; otherwise the job's steps, once it runs */
  submit(job: GenerationJob): AsyncGenerator<JobStep>;
  stats(): EngineStats;
  /** frees what the engine keeps for a model that is being unloaded (its KV pool); no job of it may be running */
  releaseModel?(model: LanguageModel): void;
}

interface Waiter {
  job: GenerationJob;
  start: (granted: boolean) => void;
}

/** The chosen token's log-probability and the k most likely alternatives (ties: lower id first), from log-softmaxed scores. */
export function topLogprobs(lp: Float32Array | Float64Array, token: number, k: number): TokenLogprob {
  const top = topIndices(lp, k).map((id) => ({ id, logprob: lp[id] }));
  return { logprob: lp[token], top };
}

/** Log-probabilities of the chosen tokens and the top-k alternatives, from the step's scores. */
function stepLogprobs(scores: Float32Array[], tokens: number[], k: number): TokenLogprob[] {
  return scores.map((s, b) => topLogprobs(logSoftmax(s), tokens[b], k));
}

/** Left-pads rows to one length: ids (pad 0) and the attention mask generateStream takes. */
function leftPad(rows: number[][]): { ids: number[][]; mask: number[][] | null } {
  const T = Math.max(...rows.map((r) => r.length));
  if (rows.every((r) => r.length === T)) return { ids: rows, mask: null };
  return { ids: rows.map((r) => [...new Array<number>(T - r.length).fill(0), ...r]), mask: rows.map((r) => [...new Array<number>(T - r.length).fill(0), ...new Array<number>(r.length).fill(1)]) };
}

export class SerialEngine implements Engine {
  private readonly waiting: Waiter[] = [];
  private running = 0;

  /** maxQueue: how many jobs may wait while one runs */
  constructor(readonly maxQueue: number) {}

  stats(): EngineStats {
    return { queued: this.waiting.length, running: this.running };
  }

  submit(job: GenerationJob): AsyncGenerator<JobStep> {
    if (this.running === 0) {
      this.running = 1;
      return this.run(job, Promise.resolve(true));
    }
    if (this.waiting.length >= this.maxQueue)
      throw new ApiError(429, `the server is busy: ${this.waiting.length} requests are queued (--max-queue ${this.maxQueue}); retry later`, null, 'queue_full');
    const turn = new Promise<boolean>((start) => {
      const waiter = { job, start };
      this.waiting.push(waiter);
      job.signal.addEventListener('abort', () => {
        const i = this.waiting.indexOf(waiter);
        if (i >= 0) {
          this.waiting.splice(i, 1);
          start(false);
        }
      }, { once: true });
    });
    return this.run(job, turn);
  }

  /** Hands the model to the next job still waiting. */
  private release(): void {
    const next = this.waiting.shift();
    if (next) next.start(true);
    else this.running = 0;
  }

  private async *run(job: GenerationJob, turn: Promise<boolean>): AsyncGenerator<JobStep> {
    if (!(await turn)) return; // left the queue (aborted) before its turn
    try {
      if (job.signal.aborted) return;
      if (adapterNames(job.model).length) setAdapter(job.model, job.adapter);
      const { ids, mask } = leftPad(job.rows);
      const input = tensor(ids, { dtype: 'int64' });
      const attentionMask = mask ? tensor(mask, { dtype: 'int64' }) : null;
      let scores: Float32Array[] = [];
      const onScores = job.topLogprobs !== null ? (_: number, s: Float32Array[]): void => void (scores = s) : undefined;
      try {
        for await (const { tokens } of generateStream(job.model, input, { ...job.options, attentionMask, onScores })) {
          yield { tokens, logprobs: job.topLogprobs !== null ? stepLogprobs(scores, tokens, job.topLogprobs) : null };
          // the model's steps are synchronous: give the event loop a turn (new requests, disconnects, /metrics)
          await nextTurn();
          if (job.signal.aborted) return; // leaving the loop returns generateStream, which frees its cache
        }
      } finally {
        input.dispose();
        attentionMask?.dispose();
      }
    } finally {
      this.release();
    }
  }
}
