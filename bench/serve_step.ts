// Where one continuous-batching decode step spends its time (issue 10's serving target: at 8
// streams the batched step should cost little more than a batch-1 step, since every weight is read
// once for all rows). In-process, no HTTP: a random float32 model of DESIGN.md's shape, B sequences
// with prefilled 32-token prompts in a PagedKVCache, then decode steps through pagedStep (the
// engine's forward) and the greedy pick per row. Reports wall and CPU ms per step at each B, the
// lm_head product's CPU ms, the per-kernel profile of the steps (k.profile, paged kernels
// included), the host pick, and the in-process BatchingEngine's aggregate tok/s and TTFT at each B
// (the same scheduler `kestrel serve` runs, without HTTP/SSE) with where its steps' time went:
// steps carrying prompt tokens, decode forward, token choice, time outside steps; and a sampled
// row's token choice (samplingProbs against its dense definition). Before timing, row 0's greedy tokens in
// the batch are checked equal to its batch-1 run. On a busy machine compare CPU ms with
// KESTREL_NUM_THREADS=1 (pool threads spin while they wait, which CPU time would count).
// Run: node --import tsx bench/serve_step.ts [--config smol135m|small] [--batches 1,8] [--steps 8] [--tokens 24] [--same-prompt]
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import * as k from '../src/index.js';
import { type SamplingOptions, argmax, drawFrom, samplingProbs } from '../src/infer/sampling.js';
import { denseProbs } from '../src/infer/sampling_reference.js';
import { pagedStep } from '../src/infer/paged_step.js';
import { PagedKVCache, type PagedSequence } from '../src/models/paged_kv_cache.js';
import { BatchingEngine, type StepTiming } from '../src/serve/batching_engine.js';
import { median, writeResult } from './lib/report.js';
import { type DecoderShape, buildDecoder } from './lib/decoder_bench.js';

const SHAPES: Record<string, DecoderShape> = {
  small: { dim: 512, layers: 8, heads: 8, kv: 2, ffn: 1376, vocab: 8000 },
  smol135m: { dim: 576, layers: 30, heads: 9, kv: 3, ffn: 1536, vocab: 49152 },
};
const PROMPT_TOKENS = 32;
const promptOf = (row: number): number[] => Array.from({ length: PROMPT_TOKENS }, (_, i) => (100 + i * 37 + row * 101) % 8000);

/** B sequences prefilled with their prompts (one step each), and each one's first greedy token. */
function prefill(model: k.CausalLM, cache: PagedKVCache, B: number): { seqs: PagedSequence[]; next: number[] } {
  const seqs: PagedSequence[] = [];
  const next: number[] = [];
  for (let b = 0; b < B; b++) {
    const seq = cache.open(promptOf(b), `bench${b}`);
    cache.reserve(seq, PROMPT_TOKENS + 64);
    const [logits] = pagedStep(model, cache, [{ seq, tokens: promptOf(b), wantLogits: true }]);
    seqs.push(seq);
    next.push(argmax(logits));
  }
  return { seqs, next };
}

/** Decode `steps` steps of all sequences together; ms per forward and per host pick, and the tokens. */
function decode(model: k.CausalLM, cache: PagedKVCache, seqs: PagedSequence[], first: number[], steps: number): { forwardMs: number[]; forwardCpuMs: number[]; pickMs: number[]; tokens: number[][] } {
  const tokens = first.map((t) => [t]);
  const forwardMs: number[] = [];
  const forwardCpuMs: number[] = [];
  const pickMs: number[] = [];
  for (let s = 0; s < steps; s++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const logits = pagedStep(model, cache, seqs.map((seq, b) => ({ seq, tokens: [tokens[b][tokens[b].length - 1]], wantLogits: true })));
    const c = process.cpuUsage(c0);
    const t1 = performance.now();
    logits.forEach((l, b) => tokens[b].push(argmax(l)));
    forwardMs.push(t1 - t0);
    forwardCpuMs.push((c.user + c.system) / 1e3);
    pickMs.push(performance.now() - t1);
  }
  return { forwardMs, forwardCpuMs, pickMs, tokens };
}

/** CPU ms of the lm_head product alone at B rows ([B, D] x [V, D]^T, the tied embedding), best of 3. */
function headCpuMs(model: k.CausalLM, B: number): number {
  const x = k.randn([B, model.config.hiddenSize]);
  const w = model.model.embed_tokens.weight;
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const c0 = process.cpuUsage();
    k.noGrad(() => k.linear(x, w)).dispose();
    const c = process.cpuUsage(c0);
    best = Math.min(best, (c.user + c.system) / 1e3);
  }
  x.dispose();
  return best;
}

const SAMPLED: SamplingOptions[] = [{ temperature: 0.8, topK: 50 }, { temperature: 0.8, topK: 50, topP: 0.95 }, { temperature: 1, topK: 0, topP: 0.9 }, { temperature: 0.7, topK: 0, minP: 0.05 }];

/**
 * A sampled row's token choice on one row of the model's logits: samplingProbs (ranks only the
 * prefix the filters need) against the dense definition it equals (a sort of all V), median ms of 5.
 */
function samplingMs(logits: Float32Array): { options: SamplingOptions; denseMs: number; samplingProbsMs: number }[] {
  const time = (f: () => unknown): number => median(Array.from({ length: 5 }, () => {
    const t0 = performance.now();
    f();
    return performance.now() - t0;
  }));
  return SAMPLED.map((o) => {
    if (drawFrom(samplingProbs(logits, o), 0.5) !== drawFrom(denseProbs(logits, o), 0.5)) throw new Error(`samplingProbs and its definition draw different tokens for ${JSON.stringify(o)}`);
    return { options: o, denseMs: time(() => drawFrom(denseProbs(logits, o), 0.5)), samplingProbsMs: time(() => drawFrom(samplingProbs(logits, o), 0.5)) };
  });
}

interface EngineRun {
  batch: number;
  aggregateTokPerSec: number;
  ttftP50Ms: number;
  steps: number;
  /** steps that carried prompt tokens: how many, their tokens and forward ms in all */
  prefillSteps: number;
  prefillTokens: number;
  prefillForwardMs: number;
  /** decode-only steps: median forward and token-choice ms */
  decodeForwardMs: number;
  decodeChooseMs: number;
  /** wall time outside forwards and choices (scheduling, flushing, the event loop), ms in all */
  otherMs: number;
  wallMs: number;
}

/**
 * The in-process BatchingEngine with B concurrent greedy jobs of `tokens` tokens, submitted at once
 * as bench/serve.ts's clients are (`samePrompt`: its one prompt for every stream, so later streams
 * reuse the first one's cached prefix block): aggregate tok/s and where the steps' time went.
 */
async function engineRun(model: k.CausalLM, B: number, tokens: number, samePrompt: boolean): Promise<EngineRun> {
  const timings: StepTiming[] = [];
  const engine = new BatchingEngine({ maxQueue: 64, kvCacheMb: 256, blockSize: 16, prefillChunk: 256, maxBatch: 64, onStep: (t) => timings.push(t) });
  const t0 = performance.now();
  const ttft: number[] = [];
  const one = async (b: number): Promise<void> => {
    const steps = engine.submit({ model, adapter: null, rows: [promptOf(samePrompt ? 0 : b)], options: { maxNewTokens: tokens, temperature: 0, eosTokenId: [] }, topLogprobs: null, signal: new AbortController().signal });
    for await (const _ of steps) if (ttft.length < B && ttft.length <= b) ttft.push(performance.now() - t0);
  };
  await Promise.all(Array.from({ length: B }, (_, b) => one(b)));
  const wall = performance.now() - t0;
  engine.releaseModel(model);
  const prefill = timings.filter((t) => t.prefillTokens > 0);
  const decode = timings.filter((t) => t.prefillTokens === 0);
  const sum = (xs: number[]): number => xs.reduce((a, x) => a + x, 0);
  return {
    batch: B, aggregateTokPerSec: (B * tokens) / (wall / 1e3), ttftP50Ms: median(ttft), steps: timings.length,
    prefillSteps: prefill.length, prefillTokens: sum(prefill.map((t) => t.prefillTokens)), prefillForwardMs: sum(prefill.map((t) => t.forwardMs)),
    decodeForwardMs: median(decode.map((t) => t.forwardMs)), decodeChooseMs: median(decode.map((t) => t.chooseMs)),
    otherMs: wall - sum(timings.map((t) => t.forwardMs + t.chooseMs)), wallMs: wall,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { config: { type: 'string', default: 'smol135m' }, batches: { type: 'string', default: '1,8' }, steps: { type: 'string', default: '8' }, tokens: { type: 'string', default: '24' }, 'same-prompt': { type: 'boolean', default: false } } });
  const shape = values.config!;
  const batches = values.batches!.split(',').map(Number);
  const steps = Number(values.steps);
  const load0 = loadavg()[0];
  const model = buildDecoder(shape, SHAPES[shape]);
  const c = model.config;
  const rows: Record<string, unknown>[] = [];
  let single: number[][] = [];
  let sampled: ReturnType<typeof samplingMs> = [];
  for (const B of batches) {
    const cache = PagedKVCache.withBudget({ numLayers: c.numLayers, numKvHeads: c.numKvHeads, headDim: c.headDim }, 64 * Math.max(...batches), 16);
    const { seqs, next } = prefill(model, cache, B);
    decode(model, cache, seqs, next, 2); // warm-up (pool threads, scratch buffers)
    for (const seq of seqs) seq.cached -= 2;
    // validate: batching changes no greedy token (row b's tokens equal its batch-1 run)
    const run = decode(model, cache, seqs, next, steps);
    if (B === 1) single = run.tokens;
    else if (single.length && JSON.stringify(run.tokens[0]) !== JSON.stringify(single[0])) throw new Error(`batch ${B}: row 0's greedy tokens differ from its batch-1 run`);
    for (const seq of seqs) seq.cached -= steps;
    k.profile.start();
    decode(model, cache, seqs, next, steps);
    const prof = k.profile.stop();
    for (const seq of seqs) seq.cached -= steps;
    const timed = decode(model, cache, seqs, next, steps);
    const forward = median(timed.forwardMs);
    const forwardCpu = median(timed.forwardCpuMs);
    const pick = median(timed.pickMs);
    const kernels = prof.kernels.slice(0, 12).map((r) => ({ kernel: r.name, calls: r.calls / steps, msPerStep: r.ms / steps }));
    const kernelMs = prof.kernels.reduce((a, r) => a + r.ms, 0) / steps;
    const head = headCpuMs(model, B);
    console.log(`\nbatch ${B}: forward ${forward.toFixed(1)} ms/step (${(forward / B).toFixed(1)} ms/token; CPU time ${forwardCpu.toFixed(1)} ms, of it the lm_head ${head.toFixed(1)}), host pick ${pick.toFixed(2)} ms/step; profiled ${(prof.wallMs / steps).toFixed(1)} ms/step, of it kernels ${kernelMs.toFixed(1)} (the rest: TypeScript, allocation)`);
    for (const r of kernels) console.log(`  ${r.kernel.padEnd(24)} ${String(r.calls).padStart(5)} calls ${r.msPerStep.toFixed(2).padStart(8)} ms/step`);
    rows.push({ batch: B, forwardMsPerStep: forward, forwardCpuMsPerStep: forwardCpu, lmHeadCpuMs: head, pickMsPerStep: pick, profiledMsPerStep: prof.wallMs / steps, kernelMsPerStep: kernelMs, topKernels: kernels });
    if (B === batches[0]) {
      const [row0] = pagedStep(model, cache, [{ seq: seqs[0], tokens: [next[0]], wantLogits: true }]);
      sampled = samplingMs(row0);
    }
    cache.dispose();
  }
  console.log('\nsampled token choice per row (V = ' + c.vocabSize + '): the dense definition vs samplingProbs');
  for (const r of sampled) console.log(`  ${JSON.stringify(r.options).padEnd(46)} ${r.denseMs.toFixed(2).padStart(7)} ms -> ${r.samplingProbsMs.toFixed(2).padStart(6)} ms`);
  const engine: EngineRun[] = [];
  for (const B of batches) engine.push(await engineRun(model, B, Number(values.tokens), values['same-prompt']!));
  console.log(`\nin-process BatchingEngine (no HTTP), ${values.tokens} tokens per stream${values['same-prompt'] ? ', one prompt for all streams' : ''}:`);
  for (const e of engine)
    console.log(`  ${String(e.batch).padStart(3)} streams: ${e.aggregateTokPerSec.toFixed(1)} tok/s, TTFT p50 ${e.ttftP50Ms.toFixed(0)} ms; ${e.steps} steps in ${e.wallMs.toFixed(0)} ms: ` +
      `${e.prefillSteps} with prompt tokens (${e.prefillTokens} tokens, ${e.prefillForwardMs.toFixed(0)} ms), decode step ${e.decodeForwardMs.toFixed(1)} ms + choice ${e.decodeChooseMs.toFixed(2)} ms, outside steps ${e.otherMs.toFixed(0)} ms`);
  const stepOf = (B: number): number | undefined => rows.find((r) => r.batch === B)?.forwardMsPerStep as number | undefined;
  const b1 = stepOf(1);
  const cpuOf = (B: number): number => rows.find((r) => r.batch === B)!.forwardCpuMsPerStep as number;
  for (const B of batches.filter((x) => x > 1 && b1))
    console.log(`step at batch ${B} / step at batch 1: wall ${(stepOf(B)! / b1!).toFixed(2)}x, CPU time ${(cpuOf(B) / cpuOf(1)).toFixed(2)}x (ideal ~1x: the weights are read once for all rows)`);
  const path = writeResult('serve_step', { config: shape, promptTokens: PROMPT_TOKENS, steps, perBatch: rows, sampledChoicePerRow: sampled, engine, loadAverage1m: { atStart: load0, atEnd: loadavg()[0] } });
  console.log(`wrote ${path}`);
  model.dispose();
}

await main();
