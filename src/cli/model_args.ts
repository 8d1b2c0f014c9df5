// Flags shared by the commands that load a model and generate (generate, chat).
import type { GenerateOptions } from '../infer/generate.js';
import { loadCausalLM } from '../models/load.js';
import type { Pretrained } from '../models/load.js';
import type { CausalLM } from '../models/causal_lm.js';
import type { Gpt2LMHeadModel } from '../models/gpt2.js';

export const MODEL_OPTIONS = {
  model: { type: 'string' },
  tokenizer: { type: 'string' },
  adapter: { type: 'string' },
  'max-new-tokens': { type: 'string' },
  temperature: { type: 'string' },
  'top-p': { type: 'string' },
  'top-k': { type: 'string' },
  'min-p': { type: 'string' },
  'repetition-penalty': { type: 'string' },
  seed: { type: 'string' },
} as const;

type Values = { [K in keyof typeof MODEL_OPTIONS]?: string };

/** A numeric flag, with an error naming the flag when it is not a number. */
export function numberFlag(values: Record<string, unknown>, name: string): number | undefined {
  const v = values[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || v.trim() === '' || !Number.isFinite(n)) throw new Error(`--${name} must be a number, got '${String(v)}'`);
  return n;
}

export async function loadFromFlags(values: Values): Promise<Pretrained<CausalLM | Gpt2LMHeadModel>> {
  if (!values.model) throw new Error('--model DIR is required');
  return loadCausalLM(values.model, { tokenizer: values.tokenizer, adapter: values.adapter });
}

/** Sampling flags over the model's generation_config.json (temperature 0 = greedy). */
export function generationFlags(values: Values, p: Pretrained): GenerateOptions {
  const eos = new Set<number>(p.tokenizer?.eosTokenIds ?? []);
  const gc = p.generationConfig?.eos_token_id;
  for (const id of Array.isArray(gc) ? gc : gc === undefined || gc === null ? [] : [gc]) if (typeof id === 'number') eos.add(id);
  return {
    generationConfig: p.generationConfig,
    maxNewTokens: numberFlag(values, 'max-new-tokens'),
    temperature: numberFlag(values, 'temperature'),
    topP: numberFlag(values, 'top-p'),
    topK: numberFlag(values, 'top-k'),
    minP: numberFlag(values, 'min-p'),
    repetitionPenalty: numberFlag(values, 'repetition-penalty'),
    seed: numberFlag(values, 'seed'),
    eosTokenId: eos.size ? [...eos] : undefined,
    decode: p.tokenizer ? (ids) => p.tokenizer!.decode(ids, { skipSpecialTokens: true }) : undefined,
  };
}
