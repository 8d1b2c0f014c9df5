// Autoregressive generation with a preallocated KV cache, as transformers' generate() does it:
// left-padded batches with position ids = cumsum(mask) - 1 (1 at pads), greedy or sampled
// tokens, eos lists and stop strings; finished rows are padded. Tokens stream via an async iterator.
import { type NumberRule, checkNumber } from '../io/check.js';
import { rand, tensor } from '../ops/creation.js';
import { argmax as argmaxOp } from '../ops/reduce.js';
import { select } from '../ops/view.js';
import { toArray, toFloat32Array } from '../ops/transfer.js';
import { noGrad } from '../tensor/grad_mode.js';
import { Generator, countersFor, fillRandom } from '../tensor/rng.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { shapeStr } from '../tensor/layout.js';
import type { LanguageModel } from '../models/causal_lm.js';
import { CausalLM } from '../models/causal_lm.js';
import { KVCache } from '../models/kv_cache.js';
import { StaticKVCache } from '../models/static_kv_cache.js';
import { CpuGraphDecoder, cpuGraphBlocker } from './cpu_graph_decode.js';
import { item } from '../ops/transfer.js';
import { GraphDecoder, graphDecodeBlocker } from './graph_decode.js';
import { checkSpeculative, speculativeDecode } from './speculative.js';
import { type SamplingOptions, applyPresenceFrequencyPenalty, applyRepetitionPenalty, argmax, drawFrom, samplingProbs } from './sampling.js';

export interface GenerateOptions extends SamplingOptions {
  maxNewTokens?: number;
  /** [B, T] 1 = token, 0 = left padding */
  attentionMask?: Tensor | null;
  /** sample (default when temperature > 0 and not 0) */
  doSample?: boolean;
  seed?: number;
  eosTokenId?: number | number[];
  padTokenId?: number;
  /** generation stops for a row once its decoded new text contains one of these */
  stopStrings?: string[];
  /** needed for stop strings */
  decode?: (ids: number[]) => string;
  /** defaults (HF generation_config.json) under the explicit options */
  generationConfig?: Record<string, unknown> | null;
  /** edits a row's scores in place after the penalties, before the pick (HF's LogitsProcessor): row, scores [V], the row's new tokens so far */
  logitsProcessor?: (row: number, scores: Float32Array, generated: readonly number[]) => void;
  /** collect the processed logits of each step ([B, V] float32 arrays: after the penalties, before temperature and filtering) */
  onScores?: (step: number, scores: Float32Array[]) => void;
  /** speculative decoding (greedy, one row): a small model sharing the tokenizer drafts tokens (speculative.ts) */
  draftModel?: LanguageModel;
  /** drafts per target forward (default 4) */
  numDraftTokens?: number;
  /**
   * the KV cache's dtype (default: the keys', float32 for a float32 or quantized model): bfloat16
   * halves its memory and what each decode step's attention reads (llama.cpp keeps an f16 cache);
   * queries then meet the keys in bf16, so logits move within its rounding
   */
  kvCacheDtype?: KvCacheDtype;
}

export const KV_CACHE_DTYPES = ['float32', 'bfloat16'] as const;
export type KvCacheDtype = (typeof KV_CACHE_DTYPES)[number];

function checkKvCacheDtype(dtype: unknown): void {
  if (dtype !== undefined && !(KV_CACHE_DTYPES as readonly unknown[]).includes(dtype))
    throw new Error(`generate: kvCacheDtype must be one of ${KV_CACHE_DTYPES.join(', ')}, got ${String(dtype)}`);
}

export interface GenerationStep {
  /** the token chosen for each row (pad for finished rows) */
  tokens: number[];
  step: number;
}

/** What each generation option may be (HF's GenerationConfig.validate); flags of the same names share it. */
export const GENERATION_RULES: Record<'maxNewTokens' | 'temperature' | 'topK' | 'topP' | 'minP' | 'repetitionPenalty' | 'presencePenalty' | 'frequencyPenalty', NumberRule> = {
  maxNewTokens: { int: true, min: 0 }, temperature: { min: 0 }, topK: { int: true, min: 0 }, topP: { above: 0, max: 1 },
  minP: { min: 0, max: 1 }, repetitionPenalty: { above: 0 }, presencePenalty: { min: -2, max: 2 }, frequencyPenalty: { min: -2, max: 2 },
};

/** The options with generation_config.json's defaults under them, checked (HF's GenerationConfig). */
export function resolveGenerateOptions(model: LanguageModel, o: GenerateOptions) {
  const gc = o.generationConfig ?? {};
  const num = (k: string): number | undefined => (typeof gc[k] === 'number' ? (gc[k] as number) : undefined);
  const eosRaw = o.eosTokenId ?? (gc.eos_token_id as number | number[] | undefined) ?? model.config.eosTokenIds;
  const eos = Array.isArray(eosRaw) ? eosRaw : eosRaw === undefined || eosRaw === null ? [] : [eosRaw];
  const temperature = o.temperature ?? num('temperature') ?? 1;
  const doSample = o.doSample ?? (o.temperature !== undefined ? o.temperature > 0 : gc.do_sample === true);
  const sampling = {
    temperature,
    topK: o.topK ?? num('top_k') ?? 50,
    topP: o.topP ?? num('top_p') ?? 1,
    minP: o.minP ?? num('min_p'),
    repetitionPenalty: o.repetitionPenalty ?? num('repetition_penalty') ?? 1,
    presencePenalty: o.presencePenalty ?? 0,
    frequencyPenalty: o.frequencyPenalty ?? 0,
  };
  const maxNewTokens = o.maxNewTokens ?? num('max_new_tokens') ?? 20;
  for (const [k, v] of Object.entries({ ...sampling, maxNewTokens })) if (v !== undefined) checkNumber(v, GENERATION_RULES[k as keyof typeof GENERATION_RULES], `generate: ${k}`);
  return { maxNewTokens, eos, pad: o.padTokenId ?? num('pad_token_id') ?? model.config.padTokenId ?? eos[0] ?? 0, doSample, sampling };
}

export type ResolvedGenerateOptions = ReturnType<typeof resolveGenerateOptions>;

/** What one row's pick reads besides its scores. */
export interface RowState {
  row: number;
  /** prompt and generated tokens (the repetition penalty's) */
  seen: readonly number[];
  generated: readonly number[];
  finished: boolean;
  /** this step's uniform draw for the row (sampling) */
  u: number;
  logitsProcessor?: GenerateOptions['logitsProcessor'];
}

/**
 * One row's next token from its scores [V], edited in place in HF's order: repetition penalty,
 * presence/frequency penalties, the logits processor, then greedy or a draw; null for a finished row.
 */
export function pickToken(s: Float32Array, r: ResolvedGenerateOptions, x: RowState): number | null {
  applyRepetitionPenalty(s, x.seen, r.sampling.repetitionPenalty);
  applyPresenceFrequencyPenalty(s, x.generated, r.sampling);
  if (x.finished) return null;
  x.logitsProcessor?.(x.row, s, x.generated);
  return r.doSample ? drawFrom(samplingProbs(s, r.sampling), x.u) : argmax(s);
}

/** Row b's uniform at its step `step` of a B-row generation: element b of the step's rand([B]) draw, as generateStream draws it. */
export function rowUniform(seed: number, rows: number, row: number, step: number): number {
  const u = new Float64Array(rows);
  fillRandom(u, 'uniform', seed, step * countersFor('uniform', rows));
  return u[row];
}

/**
 * Yields one step at a time: the next token of every row. The cache and all per-step tensors
 * are freed when the iterator finishes (or is abandoned with return()).
 * @example for await (const { tokens } of generateStream(model, ids, { maxNewTokens: 20 })) ...
 */
export async function* generateStream(model: LanguageModel, inputIds: Tensor, opts: GenerateOptions = {}): AsyncGenerator<GenerationStep> {
  if (inputIds.ndim !== 2 || (inputIds.dtype !== 'int64' && inputIds.dtype !== 'int32'))
    throw new Error(`generate: inputIds must be an int64 [batch, seq] tensor, got ${inputIds.dtype} ${shapeStr(inputIds.shape)}`);
  const r = resolveGenerateOptions(model, opts);
  const [B, T0] = inputIds.shape;
  const backend = inputIds.backendName;
  const c = model.config;
  const mask: number[][] = opts.attentionMask ? (toArray(opts.attentionMask) as number[][]) : Array.from({ length: B }, () => new Array(T0).fill(1));
  const seqs = toArray(inputIds) as number[][];
  // on a GPU, batch-1 steps after the prompt replay one recorded CUDA graph (graph_decode.ts)
  const padded = mask.some((row) => row.some((x) => !x));
  const graphs = graphDecodeBlocker(model, backend, B, padded) === null && model instanceof CausalLM;
  // on the CPU, batch-1 steps after the prompt replay one recorded CPU graph (cpu_graph_decode.ts),
  // over a cache and graph the model keeps for its next generation
  const dtype = opts.kvCacheDtype;
  checkKvCacheDtype(dtype);
  const cpuDecoder = !graphs && cpuGraphBlocker(model, backend, B, padded) === null ? CpuGraphDecoder.acquire(model as CausalLM, T0 + r.maxNewTokens, backend, dtype) : null;
  const cache = cpuDecoder?.cache ?? (graphs
    ? new StaticKVCache(c.numLayers, B, c.numKvHeads, T0 + r.maxNewTokens, c.headDim, { backend, dtype })
    : new KVCache(c.numLayers, B, c.numKvHeads, T0 + r.maxNewTokens, c.headDim, { backend, dtype }));
  const decoder = graphs && cache instanceof StaticKVCache ? new GraphDecoder(model, cache) : null;
  // a greedy pick with nothing else to see the scores needs only the argmax back from the device
  const penalized = r.sampling.repetitionPenalty !== 1 || r.sampling.presencePenalty !== 0 || r.sampling.frequencyPenalty !== 0;
  const argmaxOnly = !r.doSample && !penalized && !opts.onScores && !opts.logitsProcessor;
  const gen = new Generator(opts.seed ?? 0);
  const finished = new Array<boolean>(B).fill(false);
  const newText = Array.from({ length: B }, () => [] as number[]);
  try {
    let stepIds = seqs.map((row) => row.slice());
    for (let step = 0; step < r.maxNewTokens && !finished.every(Boolean); step++) {
      let flat: Float32Array | null = null;
      let picked: number | null = null;
      const graphDecoder = step > 0 ? (decoder ?? cpuDecoder) : null;
      if (graphDecoder) {
        const out = graphDecoder.step(stepIds[0][0], cache.length);
        if (argmaxOnly) picked = item(out.argmax);
        else flat = toFloat32Array(out.logits);
      } else {
        // positions: cumsum(mask) - 1 over the whole sequence so far, 1 at pads (HF)
        const positions = mask.map((m) => {
          let c2 = 0;
          return m.map((x) => (x ? c2++ : 1)).slice(cache.length);
        });
        // batch-1 greedy takes the argmax on the backend and reads one id, not V logits
        const onlyArgmax = argmaxOnly && B === 1;
        const logits = noGrad(() => tidy(() => {
          const ids = tensor(stepIds, { dtype: 'int64', backend });
          const out = model.forward({
            inputIds: ids,
            // an unpadded batch needs no mask (causality is the attention kernel's): no per-step mask ops
            attentionMask: decoder || !padded ? null : tensor(mask, { dtype: 'int64', backend }),
            positionIds: tensor(positions, { dtype: 'int64', backend }),
            cache,
            lastLogitsOnly: true,
          });
          const last = select(out.logits!, 1, 0); // [B, V]
          return onlyArgmax ? argmaxOp(last, -1) : last;
        }));
        if (onlyArgmax) picked = item(logits);
        else flat = toFloat32Array(logits);
        logits.dispose();
      }
      const V = flat ? flat.length / B : 0;
      const scores = flat ? Array.from({ length: B }, (_, b) => flat!.slice(b * V, (b + 1) * V)) : [];
      const us = r.doSample ? noGrad(() => tidy(() => toFloat32Array(rand([B], { generator: gen, backend })))) : null;
      const tokens = picked !== null ? [finished[0] ? r.pad : picked] : scores.map((s, b) => {
        const t = pickToken(s, r, { row: b, seen: seqs[b], generated: newText[b], finished: finished[b], u: us?.[b] ?? 0, logitsProcessor: opts.logitsProcessor });
        return t ?? r.pad;
      });
      opts.onScores?.(step, scores);
      tokens.forEach((t, b) => {
        seqs[b].push(t);
        mask[b].push(1);
        if (finished[b]) return;
        newText[b].push(t);
        if (r.eos.includes(t)) finished[b] = true;
        else if (opts.stopStrings?.length && opts.decode) {
          const text = opts.decode(newText[b]);
          if (opts.stopStrings.some((s) => text.includes(s))) finished[b] = true;
        }
      });
      stepIds = tokens.map((t) => [t]);
      yield { tokens, step };
    }
  } finally {
    decoder?.dispose();
    if (cpuDecoder) cpuDecoder.release();
    else cache.dispose();
  }
}

/**
 * Full sequences (prompt + new tokens) as int64 [B, T0 + n], as transformers returns them.
 * @example const out = await generate(model, ids, { maxNewTokens: 12 })  // greedy
 */
export async function generate(model: LanguageModel, inputIds: Tensor, opts: GenerateOptions = {}): Promise<Tensor> {
  const rows = toArray(inputIds) as number[][];
  if (opts.draftModel) {
    const r = resolveGenerateOptions(model, opts);
    const penalized = r.sampling.repetitionPenalty !== 1 || r.sampling.presencePenalty !== 0 || r.sampling.frequencyPenalty !== 0;
    checkSpeculative(inputIds, { sampling: r.doSample, penalized, processor: !!(opts.logitsProcessor || opts.onScores) });
    if (opts.attentionMask && (toArray(opts.attentionMask) as number[][]).some((m) => m.some((x) => !x)))
      throw new Error('generate: speculative decoding (draftModel) takes an unpadded prompt');
    checkKvCacheDtype(opts.kvCacheDtype);
    const { tokens } = speculativeDecode(model, rows[0], { draftModel: opts.draftModel, numDraftTokens: opts.numDraftTokens, maxNewTokens: r.maxNewTokens, eos: r.eos, kvCacheDtype: opts.kvCacheDtype });
    return tensor([[...rows[0], ...tokens]], { dtype: 'int64', backend: inputIds.backendName });
  }
  for await (const { tokens } of generateStream(model, inputIds, opts)) tokens.forEach((t, b) => rows[b].push(t));
  return tensor(rows, { dtype: 'int64', backend: inputIds.backendName });
}
