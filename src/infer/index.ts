// Inference: generation with a KV cache. Attaches model.generate() / model.stream() to CausalLM
// (models sit above infer in the layer order, so the methods are added here).
import { CausalLM, type LanguageModel } from '../models/causal_lm.js';
import { Gpt2LMHeadModel } from '../models/gpt2.js';
import type { Tensor } from '../tensor/tensor.js';
import { type GenerateOptions, type GenerationStep, generate, generateStream } from './generate.js';

export { KV_CACHE_DTYPES, generate, generateStream, type GenerateOptions, type GenerationStep, type KvCacheDtype } from './generate.js';
export { speculativeDecode, type SpeculativeOptions, type SpeculativeStats } from './speculative.js';
export { samplingProbs, applyRepetitionPenalty, type SamplingOptions } from './sampling.js';

interface Generates {
  /** prompt + new tokens as int64 [B, T0 + n] (temperature 0 = greedy) */
  generate(inputIds: Tensor, opts?: GenerateOptions): Promise<Tensor>;
  /** the next token of every row, step by step */
  stream(inputIds: Tensor, opts?: GenerateOptions): AsyncGenerator<GenerationStep>;
}

declare module '../models/causal_lm.js' {
  interface CausalLM extends Generates {}
}
declare module '../models/gpt2.js' {
  interface Gpt2LMHeadModel extends Generates {}
}

for (const cls of [CausalLM, Gpt2LMHeadModel]) {
  cls.prototype.generate = function (this: LanguageModel, ids: Tensor, opts?: GenerateOptions) {
    return generate(this, ids, opts);
  };
  cls.prototype.stream = function (this: LanguageModel, ids: Tensor, opts?: GenerateOptions) {
    return generateStream(this, ids, opts);
  };
}
