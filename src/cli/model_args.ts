// Flags shared by the commands that load a model and generate (generate, chat).
import { type GenerateOptions, type KvCacheDtype, GENERATION_RULES as R } from '../infer/generate.js';
import { loadCausalLM } from '../models/load.js';
import type { Pretrained } from '../models/load.js';
import type { CausalLM } from '../models/causal_lm.js';
import type { Gpt2LMHeadModel } from '../models/gpt2.js';
import { numberFlag } from './flags.js';
import { checkInferenceQuant } from '../quant/quantize_model.js';

export const MODEL_OPTIONS = {
  model: { type: 'string' },
  tokenizer: { type: 'string' },
  adapter: { type: 'string' },
  quant: { type: 'string' },
  'max-new-tokens': { type: 'string' },
  temperature: { type: 'string' },
  'top-p': { type: 'string' },
  'top-k': { type: 'string' },
  'min-p': { type: 'string' },
  'repetition-penalty': { type: 'string' },
  seed: { type: 'string' },
  'kv-dtype': { type: 'string' },
} as const;

type Values = { [K in keyof typeof MODEL_OPTIONS]?: string };

export async function loadFromFlags(values: Values): Promise<Pretrained<CausalLM | Gpt2LMHeadModel>> {
  if (!values.model) throw new Error('--model DIR is required');
  samplingFlags(values); // bad flags fail before a model load that can take minutes
  const quant = values.quant === undefined ? undefined : checkInferenceQuant(values.quant, '--quant');
  return loadCausalLM(values.model, { tokenizer: values.tokenizer, adapter: values.adapter, quant });
}

/** The sampling flags, each checked against its rule (GENERATION_RULES). */
export function samplingFlags(values: Values): GenerateOptions {
  return {
    maxNewTokens: numberFlag(values, 'max-new-tokens', R.maxNewTokens),
    temperature: numberFlag(values, 'temperature', R.temperature),
    topP: numberFlag(values, 'top-p', R.topP),
    topK: numberFlag(values, 'top-k', R.topK),
    minP: numberFlag(values, 'min-p', R.minP),
    repetitionPenalty: numberFlag(values, 'repetition-penalty', R.repetitionPenalty),
    seed: numberFlag(values, 'seed', { int: true, min: 0 }),
    kvCacheDtype: kvDtypeFlag(values['kv-dtype']),
  };
}

const KV_DTYPE_NAMES: Record<string, KvCacheDtype> = { fp32: 'float32', float32: 'float32', bf16: 'bfloat16', bfloat16: 'bfloat16' };

/** --kv-dtype: the KV cache's dtype (undefined: the model's activations'). */
function kvDtypeFlag(value: string | undefined): KvCacheDtype | undefined {
  if (value === undefined) return undefined;
  const dtype = Object.hasOwn(KV_DTYPE_NAMES, value) ? KV_DTYPE_NAMES[value] : undefined;
  if (!dtype) throw new Error(`--kv-dtype: expected fp32 or bf16, got '${value}'`);
  return dtype;
}

/** Sampling flags over the model's generation_config.json (temperature 0 = greedy). */
export function generationFlags(values: Values, p: Pretrained): GenerateOptions {
  const eos = new Set<number>(p.tokenizer?.eosTokenIds ?? []);
  const gc = p.generationConfig?.eos_token_id;
  for (const id of Array.isArray(gc) ? gc : gc === undefined || gc === null ? [] : [gc]) if (typeof id === 'number') eos.add(id);
  return {
    ...samplingFlags(values),
    generationConfig: p.generationConfig,
    eosTokenId: eos.size ? [...eos] : undefined,
    decode: p.tokenizer ? (ids) => p.tokenizer!.decode(ids, { skipSpecialTokens: true }) : undefined,
  };
}
