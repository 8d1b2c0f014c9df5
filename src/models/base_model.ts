// A decoder family's base model on its own, without a head: HF's LlamaModel / MistralModel /
// Qwen2Model / Qwen3Model (modeling_llama.py LlamaModel). Decoder embedding models ship this way
// (e5-mistral, gte-Qwen2, Qwen3-Embedding: `embed_tokens.*`, `layers.N.*`, `norm.weight`, no
// `model.` prefix, no lm_head), so it loads and saves in exactly that key layout.
import type { InitOpts } from '../nn/init.js';
import { tidy } from '../tensor/scope.js';
import type { DecoderConfig } from './config.js';
import { type Checkpointing, type DecoderInput, type DecoderOutput, DecoderModel } from './decoder.js';
import { initHfWeights } from './causal_lm.js';
import type { Json } from './families/hf_config.js';

/** The architectures entry of a headless base model (LlamaModel, Qwen2Model, ...; not *ForCausalLM or GPT2LMHeadModel), or null. */
export function baseArchitecture(raw: Json): string | null {
  const a = Array.isArray(raw.architectures) ? raw.architectures[0] : undefined;
  return typeof a === 'string' && /^[A-Za-z0-9]+Model$/.test(a) && !/For|LMHeadModel$/.test(a) ? a : null;
}

/**
 * True when a checkpoint's tensor names are a base model's: `embed_tokens.weight` at the top level
 * and no `model.` head wrapper (transformers loads such a file into either class by its
 * base_model_prefix; Qwen3-Embedding's config names Qwen3ForCausalLM over weights of this kind).
 */
export const isBaseCheckpoint = (has: (name: string) => boolean): boolean => has('embed_tokens.weight') && !has('model.embed_tokens.weight');

/**
 * The decoder stack whose output is the final-norm hidden state [B, T, D].
 * @example const { model } = await k.loadPretrained('./e5-mistral'); model.forward({ inputIds }).hidden
 */
export class DecoderBaseModel extends DecoderModel {
  /** applies to training forwards (grad enabled), as CausalLM's */
  checkpointing: Checkpointing = 'none';

  constructor(readonly config: DecoderConfig, init: InitOpts = {}) {
    super(config, init);
    initHfWeights(this, config.initializerRange, init);
  }

  override dispose(): void {
    this.releaseRotaryCache();
    super.dispose();
  }

  /** Embeddings -> layers -> final norm, in its own scope (the hidden state and hiddenStates are returned). */
  override forward(input: DecoderInput, checkpointing: Checkpointing = this.checkpointing): DecoderOutput {
    return tidy(() => super.forward(input, checkpointing));
  }
}
