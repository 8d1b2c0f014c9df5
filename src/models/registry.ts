// model_type -> the family that reads its config.json. An unknown type lists the supported ones.
// Speech models (Whisper, EnCodec) are their own classes, not decoder families, built here too so
// that loadPretrained returns them; finishLoading applies what each freezes after its weights load.
import { type DecoderConfig, checkDecoderConfig } from './config.js';
import { gemma, gemma2 } from './families/gemma.js';
import type { Json } from './families/hf_config.js';
import { llama, mistral, qwen2, qwen3 } from './families/llama.js';
import { mixtral, qwen2Moe } from './families/moe.js';
import { phi3 } from './families/phi3.js';
import { BertModel, bertConfig } from './bert.js';
import { CausalLM } from './causal_lm.js';
import { Gpt2LMHeadModel, gpt2Config } from './gpt2.js';
import type { InitOpts } from '../nn/init.js';
import type { Module } from '../nn/module.js';
import { DecoderForSequenceClassification, isSequenceClassification, numLabelsOf } from './seq_cls.js';
import { DecoderBaseModel, baseArchitecture } from './base_model.js';
import { WhisperForConditionalGeneration, whisperConfig } from './whisper.js';
import { EncodecModel } from './encodec.js';
import { encodecConfig } from './encodec_config.js';

export const DECODER_FAMILIES: Record<string, (raw: Json, file: string) => DecoderConfig> = {
  llama, mistral, qwen2, qwen3, mixtral, qwen2_moe: qwen2Moe, gemma, gemma2, phi3,
};

export const SUPPORTED_MODEL_TYPES = [...Object.keys(DECODER_FAMILIES), 'gpt2', 'bert', 'whisper', 'encodec'];

function unsupported(raw: Json, file: string): never {
  throw new Error(`${file}: model_type ${JSON.stringify(raw.model_type)} is not supported (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`);
}

/**
 * config.json -> the checked DecoderConfig (random init or loading: every config passes here).
 * @example new CausalLM(decoderConfig(readJson('model/config.json'), 'model/config.json'))
 */
export function decoderConfig(raw: Json, file: string): DecoderConfig {
  const type = raw.model_type;
  // own keys only: 'constructor' or 'toString' must not find Object.prototype's functions
  const family = typeof type === 'string' && Object.hasOwn(DECODER_FAMILIES, type) ? DECODER_FAMILIES[type] : undefined;
  return family ? checkDecoderConfig(family(raw, file), file) : unsupported(raw, file);
}

/** Speech-to-text and the neural audio codec: neither is a text LM or an embedding backbone. */
export type SpeechModel = WhisperForConditionalGeneration | EncodecModel;

export type AnyModel = CausalLM | Gpt2LMHeadModel | BertModel | DecoderForSequenceClassification | DecoderBaseModel | SpeechModel;

export const isSpeechModel = (m: AnyModel): m is SpeechModel => m instanceof WhisperForConditionalGeneration || m instanceof EncodecModel;

/** A decoder family's base model (LlamaModel, Qwen2Model, ...); GPT-2's GPT2Model is refused by name. */
function decoderBase(raw: Json, file: string, init: InitOpts): DecoderBaseModel {
  if (raw.model_type === 'gpt2')
    throw new Error(`${file}: ${baseArchitecture(raw) ?? 'a base model'} (GPT-2 without its LM head) is not supported; base models load for the decoder families: ${Object.keys(DECODER_FAMILIES).join(', ')}`);
  return new DecoderBaseModel(decoderConfig(raw, file), init);
}

/** A decoder family's *ForSequenceClassification (GPT-2's and BERT's use other layouts and are refused). */
function sequenceClassifier(raw: Json, file: string, init: InitOpts): DecoderForSequenceClassification {
  if (raw.model_type === 'gpt2' || raw.model_type === 'bert')
    throw new Error(`${file}: ${String((raw.architectures as string[])[0])} is not supported (sequence classification is offered for the decoder families: ${Object.keys(DECODER_FAMILIES).join(', ')})`);
  return new DecoderForSequenceClassification(decoderConfig(raw, file), numLabelsOf(raw, file), init);
}

export interface BuildOptions {
  /**
   * build the headless base model (embed_tokens, layers, norm at the top level) whatever the
   * architectures entry says; default: when it names one (LlamaModel, Qwen2Model, ...)
   */
  base?: boolean;
}

/**
 * The architecture config.json names, with random weights, or with { backend: 'meta' } meta
 * (storage-less) parameters for loading to allocate. A decoder family's `*Model` architecture
 * (or `base: true`) gives the headless DecoderBaseModel.
 * @example const model = buildModel(readJson('model/config.json'), 'model/config.json', { backend: 'meta' })
 */
export function buildModel(raw: Json, file: string, init: InitOpts = {}, opts: BuildOptions = {}): AnyModel {
  // base models exist for the text decoders only (EncodecModel is a whole model, not a headless one)
  const textDecoder = raw.model_type === 'gpt2' || (typeof raw.model_type === 'string' && Object.hasOwn(DECODER_FAMILIES, raw.model_type));
  const base = textDecoder && (opts.base ?? baseArchitecture(raw) !== null);
  const model = isSequenceClassification(raw) ? sequenceClassifier(raw, file, init)
    : base ? decoderBase(raw, file, init)
    : raw.model_type === 'gpt2' ? new Gpt2LMHeadModel(gpt2Config(raw, file), init)
    : raw.model_type === 'bert' ? new BertModel(bertConfig(raw, file), init)
    : raw.model_type === 'whisper' ? new WhisperForConditionalGeneration(whisperConfig(raw, file), init)
    : raw.model_type === 'encodec' ? new EncodecModel(encodecConfig(raw, file), init)
    : new CausalLM(decoderConfig(raw, file), init);
  // a lazily built parameter used before loading is an error that names it
  if (init.backend === 'meta') for (const [name, p] of model.namedParameters()) p.name = name;
  return model;
}

/**
 * What a model freezes once its weights are loaded: Whisper's sinusoidal encoder positions (a
 * table, never trained), every EnCodec weight (the codec is inference only). Others: nothing.
 * @example loadWeights(model, folder); finishLoading(model)
 */
export function finishLoading<M extends Module>(model: M): M {
  if (model instanceof WhisperForConditionalGeneration) model.model.encoder.embed_positions.weight.requiresGrad_(false);
  else if (model instanceof EncodecModel) model.requiresGrad_(false);
  return model;
}
