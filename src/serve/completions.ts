// POST /v1/chat/completions and /v1/completions: validate, submit one job (every prompt times n
// rows, left-padded into one batch), then either stream each choice's safe new text as SSE chunks
// or answer once at the end. A client that goes away aborts the job (queued or running).
import type { ServerResponse } from 'node:http';
import type { GenerateOptions } from '../infer/generate.js';
import { JsonObjectConstraint, tokenPieces } from '../infer/json_constraint.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { Choice } from './choice.js';
import type { Engine, GenerationJob, JobStep } from './engine.js';
import { EventStream, sendJson } from './http_io.js';
import type { ServerMetrics } from './metrics.js';
import type { CompletionParams } from './request_params.js';
import { ResponseWriter, type Usage } from './response_format.js';

export interface CompletionContext {
  engine: Engine;
  metrics: ServerMetrics;
}

/** Each token's text, computed once per tokenizer (a pass over the vocabulary) for json_object requests. */
const piecesCache = new WeakMap<Tokenizer, (string | null)[]>();
function piecesOf(tok: Tokenizer, vocabSize: number, decode: (ids: number[]) => string): (string | null)[] {
  let pieces = piecesCache.get(tok);
  if (!pieces) piecesCache.set(tok, (pieces = tokenPieces(decode, vocabSize, tok.encode('a', { addSpecialTokens: false }))));
  return pieces;
}

function job(p: CompletionParams, rows: number[][], decode: (ids: number[]) => string, eos: number[], signal: AbortSignal): GenerationJob {
  return {
    model: p.served.pretrained.model, adapter: p.served.adapter, rows, signal, topLogprobs: p.topLogprobs,
    options: {
      maxNewTokens: p.maxTokens, temperature: p.temperature, doSample: p.temperature > 0, topP: p.topP, topK: p.topK, minP: p.minP,
      repetitionPenalty: p.repetitionPenalty, presencePenalty: p.presencePenalty, frequencyPenalty: p.frequencyPenalty,
      // without a seed every request draws differently, as OpenAI's do
      seed: p.seed ?? Math.floor(Math.random() * 2 ** 31), eosTokenId: eos, stopStrings: p.stop, decode,
      logitsProcessor: logitsProcessor(p, decode, eos),
    },
  };
}

/** logit_bias, then the JSON-object constraint (so a bias can never unmask an invalid token). */
function logitsProcessor(p: CompletionParams, decode: (ids: number[]) => string, eos: number[]): GenerateOptions['logitsProcessor'] {
  const json = p.jsonObject ? new JsonObjectConstraint(piecesOf(p.served.tokenizer, p.served.pretrained.model.config.vocabSize, decode), eos) : null;
  if (!json && !p.logitBias.size) return undefined;
  return (row, scores, generated) => {
    for (const [id, b] of p.logitBias) scores[id] += b;
    json?.process(row, scores, generated);
  };
}

/** Applies one engine step to the choices; returns how many tokens it added. */
function apply(step: JobStep, choices: Choice[]): number {
  let added = 0;
  choices.forEach((c, b) => {
    if (c.finishReason) return;
    const before = c.ids.length;
    c.push(step.tokens[b], step.logprobs?.[b] ?? null);
    added += c.ids.length - before;
  });
  return added;
}

/**
 * Runs a validated request to its response. Throws (an ApiError 429 from the engine) only before
 * anything was written.
 */
export async function runCompletion(p: CompletionParams, res: ServerResponse, signal: AbortSignal, ctx: CompletionContext): Promise<void> {
  const tok: Tokenizer = p.served.tokenizer;
  const decode = (ids: number[]): string => tok.decode(ids, { skipSpecialTokens: true });
  const eos = p.ignoreEos ? [] : p.served.eosTokenIds;
  const rows = p.prompts.flatMap((ids) => Array.from({ length: p.n }, () => ids));
  const choices = rows.map((_, i) => new Choice(i, decode, p.stop, p.maxTokens, eos));
  const steps = ctx.engine.submit(job(p, rows, decode, eos, signal));
  const writer = new ResponseWriter(p, (id) => tok.decode([id]));
  const stream = p.stream ? new EventStream(res) : null;
  const opened = new Set<number>(); // choices that sent a chunk (chat: the role went out)
  const closed = new Set<number>(); // choices that sent their finish_reason
  let ran = false;
  for await (const step of steps) {
    if (!ran) ctx.metrics.promptTokens += p.prompts.reduce((s, ids) => s + ids.length, 0);
    ran = true;
    ctx.metrics.countTokens(apply(step, choices));
    if (stream) for (const c of choices) {
      const delta = c.takeDelta();
      // a finished choice sends its finish_reason once; an unfinished one only when it has news
      if (!delta.text && !delta.logprobs.length && (!c.finishReason || closed.has(c.index))) continue;
      stream.send(writer.chunk(c, delta, !opened.has(c.index)));
      opened.add(c.index);
      if (c.finishReason) closed.add(c.index);
    }
  }
  if (signal.aborted) return;
  for (const c of choices) c.end('length');
  const completion = choices.reduce((s, c) => s + c.ids.length, 0);
  const promptTokens = p.prompts.reduce((s, ids) => s + ids.length, 0);
  const usage: Usage = { prompt_tokens: promptTokens, completion_tokens: completion, total_tokens: promptTokens + completion };
  if (!stream) return sendJson(res, 200, writer.whole(choices, usage));
  for (const c of choices) if (!closed.has(c.index)) stream.send(writer.chunk(c, c.takeDelta(), !opened.has(c.index)));
  if (p.includeUsage) stream.send(writer.usageChunk(usage));
  stream.done();
}
