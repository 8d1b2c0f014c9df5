// Inference: generation with a KV cache. Attaches model.generate() / model.stream() to CausalLM
// (models sit above infer in the layer order, so the methods are added here).
import { CausalLM } from '../models/causal_lm.js';
import type { Tensor } from '../tensor/tensor.js';
import { type GenerateOptions, type GenerationStep, generate, generateStream } from './generate.js';

export { generate, generateStream, type GenerateOptions, type GenerationStep } from './generate.js';
export { samplingProbs, applyRepetitionPenalty, type SamplingOptions } from './sampling.js';

declare module '../models/causal_lm.js' {
  interface CausalLM {
    /** prompt + new tokens as int64 [B, T0 + n] (temperature 0 = greedy) */
    generate(inputIds: Tensor, opts?: GenerateOptions): Promise<Tensor>;
    /** the next token of every row, step by step */
    stream(inputIds: Tensor, opts?: GenerateOptions): AsyncGenerator<GenerationStep>;
  }
}

CausalLM.prototype.generate = function (this: CausalLM, ids: Tensor, opts?: GenerateOptions) {
  return generate(this, ids, opts);
};
CausalLM.prototype.stream = function (this: CausalLM, ids: Tensor, opts?: GenerateOptions) {
  return generateStream(this, ids, opts);
};
