// What a chat or completion request asks for, validated: the model, the prompts as token ids,
// n, max_tokens against the context, OpenAI's sampling fields (plus vLLM's top_k, min_p,
// repetition_penalty, ignore_eos), stop strings, seed, logprobs and response_format.
import { GENERATION_RULES as R } from '../infer/generate.js';
import { BodyFields } from './body_fields.js';
import { ApiError, invalid } from './errors.js';
import type { ModelRegistry, ServedModel } from './model_registry.js';
import { chatPromptIds, promptIds } from './prompts.js';

export type Endpoint = 'chat' | 'completion';

/** Most choices one request may ask for (n times the number of prompts). */
export const MAX_CHOICES = 16;
/** OpenAI's limits: 4 stop strings, 20 top logprobs. */
const MAX_STOP = 4;
const MAX_TOP_LOGPROBS = 20;

export interface CompletionParams {
  endpoint: Endpoint;
  served: ServedModel;
  /** token ids of each prompt (a chat request has one) */
  prompts: number[][];
  n: number;
  maxTokens: number;
  stream: boolean;
  includeUsage: boolean;
  temperature: number;
  topP: number;
  topK: number;
  minP: number;
  repetitionPenalty: number;
  presencePenalty: number;
  frequencyPenalty: number;
  seed: number | undefined;
  stop: string[];
  ignoreEos: boolean;
  /** null: no logprobs; k: the chosen token's plus the k most likely */
  topLogprobs: number | null;
  /** response_format {type: 'json_object'} */
  jsonObject: boolean;
  /** OpenAI's logit_bias: token id -> a value added to its logit before the pick */
  logitBias: Map<number, number>;
}

export function servedModel(f: BodyFields, models: ModelRegistry): ServedModel {
  const id = f.requiredString('model');
  const served = models.get(id);
  if (!served) throw new ApiError(404, `the model '${id}' does not exist; this server has ${models.list().map((m) => `'${m.id}'`).join(', ')}`, 'model', 'model_not_found');
  return served;
}

/** logprobs: a bool plus top_logprobs for chat, an int (the top count) for completions. */
function topLogprobs(f: BodyFields, endpoint: Endpoint): number | null {
  const rule = { int: true, min: 0, max: MAX_TOP_LOGPROBS };
  if (endpoint === 'completion') return f.number('logprobs', rule) ?? null;
  const top = f.number('top_logprobs', rule);
  if (!f.boolean('logprobs', false)) {
    if (top !== undefined) throw invalid(`'top_logprobs' needs 'logprobs': true`, 'top_logprobs');
    return null;
  }
  return top ?? 0;
}

function jsonObjectFormat(f: BodyFields, endpoint: Endpoint): boolean {
  const format = f.object('response_format');
  if (!format) return false;
  const type = format.type;
  if (type === 'text') return false;
  if (type === 'json_object' && f.boolean('ignore_eos', false)) throw invalid(`'ignore_eos' cannot be combined with 'response_format' json_object (eos ends the object)`, 'ignore_eos');
  if (type !== 'json_object') throw invalid(`'response_format.type' must be 'text' or 'json_object', got ${JSON.stringify(type)} (json_schema is not supported)`, 'response_format.type');
  // as OpenAI does: without an instruction to write JSON a model may emit whitespace forever
  if (endpoint === 'chat' && !/json/i.test(JSON.stringify(f.body.messages)))
    throw invalid(`'messages' must contain the word 'json' in some form to use 'response_format' of type 'json_object'`, 'messages');
  return true;
}

function logitBias(f: BodyFields, vocab: number): Map<number, number> {
  const bias = new Map<number, number>();
  for (const [key, v] of Object.entries(f.object('logit_bias') ?? {})) {
    const id = Number(key);
    if (!/^\d+$/.test(key) || id >= vocab) throw invalid(`'logit_bias' key '${key}' must be a token id in [0, ${vocab})`, 'logit_bias');
    if (typeof v !== 'number' || !(v >= -100 && v <= 100)) throw invalid(`'logit_bias.${key}' must be a number in [-100, 100], got ${JSON.stringify(v)}`, 'logit_bias');
    bias.set(id, v);
  }
  return bias;
}

/** Completion options this server does not implement: refused by name rather than ignored. */
function refuseUnsupported(f: BodyFields, endpoint: Endpoint): void {
  if (endpoint !== 'completion') return;
  if (f.boolean('echo', false)) throw invalid(`'echo' is not supported`, 'echo');
  if (f.has('suffix')) throw invalid(`'suffix' is not supported`, 'suffix');
  const bestOf = f.number('best_of', { int: true, min: 1 });
  if (bestOf !== undefined && bestOf !== (f.body.n ?? 1)) throw invalid(`'best_of' is not supported (other than equal to 'n')`, 'best_of');
}

/** Checks every prompt fits the context with room for max_tokens (default: completions 16, chat the rest of the context). */
function maxTokens(f: BodyFields, endpoint: Endpoint, served: ServedModel, prompts: number[][]): number {
  const field = endpoint === 'chat' && f.has('max_completion_tokens') ? 'max_completion_tokens' : 'max_tokens';
  const ctx = served.contextLength;
  const longest = Math.max(...prompts.map((p) => p.length));
  const promptField = endpoint === 'chat' ? 'messages' : 'prompt';
  if (prompts.some((p) => p.length === 0)) throw invalid(`'${promptField}' is empty after tokenization`, promptField);
  if (longest >= ctx)
    throw invalid(`this model's maximum context length is ${ctx} tokens, but the prompt has ${longest} tokens (no room for a completion)`, promptField);
  const requested = f.number(field, { int: true, min: 1 });
  const max = requested ?? (endpoint === 'chat' ? ctx - longest : Math.min(16, ctx - longest));
  if (longest + max > ctx)
    throw invalid(`this model's maximum context length is ${ctx} tokens; the prompt has ${longest} tokens and '${field}' asks for ${max} more`, field);
  return max;
}

export function completionParams(body: unknown, endpoint: Endpoint, models: ModelRegistry): CompletionParams {
  const f = new BodyFields(body);
  const served = servedModel(f, models);
  refuseUnsupported(f, endpoint);
  const prompts = endpoint === 'chat' ? [chatPromptIds(f, served)] : promptIds(f, served);
  const n = f.number('n', { int: true, min: 1, max: MAX_CHOICES }, 1);
  if (n * prompts.length > MAX_CHOICES) throw invalid(`'n' (${n}) times the ${prompts.length} prompts exceeds ${MAX_CHOICES} choices per request`, 'n');
  const streamOptions = f.object('stream_options');
  const includeUsage = streamOptions?.include_usage;
  if (includeUsage !== undefined && typeof includeUsage !== 'boolean') throw invalid(`'stream_options.include_usage' must be a boolean`, 'stream_options.include_usage');
  return {
    endpoint, served, prompts, n,
    maxTokens: maxTokens(f, endpoint, served, prompts),
    stream: f.boolean('stream', false),
    includeUsage: includeUsage === true,
    temperature: f.number('temperature', { min: 0, max: 2 }, 1),
    topP: f.number('top_p', R.topP, 1),
    // vLLM's convention: -1 (or 0) turns top-k off
    topK: Math.max(0, f.number('top_k', { int: true, min: -1 }, 0)),
    minP: f.number('min_p', R.minP, 0),
    repetitionPenalty: f.number('repetition_penalty', R.repetitionPenalty, 1),
    presencePenalty: f.number('presence_penalty', R.presencePenalty, 0),
    frequencyPenalty: f.number('frequency_penalty', R.frequencyPenalty, 0),
    seed: f.number('seed', { int: true, min: 0, max: 2 ** 53 - 1 }),
    stop: f.stopStrings('stop', MAX_STOP),
    ignoreEos: f.boolean('ignore_eos', false),
    topLogprobs: topLogprobs(f, endpoint),
    jsonObject: jsonObjectFormat(f, endpoint),
    logitBias: logitBias(f, served.pretrained.model.config.vocabSize),
  };
}
