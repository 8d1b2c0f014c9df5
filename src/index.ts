// Kestrel's public API: `import * as k from 'kestrel'`.
import './ops/methods.js';
import './autograd/index.js';

export { Tensor, type GradFn, type GradHook } from './tensor/tensor.js';
export { metaTensor, isMeta } from './tensor/meta.js';
export { type DType, DTYPES } from './tensor/dtype.js';
export { memory, type MemoryStats, type MemoryTag } from './tensor/memory.js';
export { Generator, manualSeed, defaultGenerator } from './tensor/rng.js';
export { tidy, keep } from './tensor/scope.js';
export { f32ToBf16, bf16ToF32, f32ToF16, f16ToF32 } from './tensor/half.js';
export { getBackend, setDefaultBackend, defaultBackend, hasBackend, type Backend, type BackendName } from './backend/index.js';
export { cuda } from './backend/cuda/public.js';

export { tensor, zeros, ones, full, zerosLike, onesLike, fullLike, scalar, arange, eye, rand, randn, randint } from './ops/creation.js';
export { empty } from './ops/dispatch.js';
export {
  add, sub, mul, div, pow, maximum, minimum, neg, clamp, where, maskedFill, compare, unary, to,
  logicalAnd, logicalOr, logicalNot,
} from './ops/elementwise.js';
export { sum, mean, max, min, argmax, argmin, variance, logsumexp } from './ops/reduce.js';
export { matmul, linear } from './ops/matmul.js';
export { gather, scatterAdd, indexSelect, indexAdd, embedding, cat, stack, split, chunk, tril, triu } from './ops/indexing.js';
export { reshape, view, permute, transpose, narrow, slice, select, expand, squeeze, unsqueeze, flatten, contiguous, clone } from './ops/view.js';
export { logSigmoid } from './ops/log_sigmoid.js';
export { softmax, logSoftmax, softmaxComposite, logSoftmaxComposite } from './ops/softmax.js';
export { rmsNorm, layerNorm, rmsNormComposite, layerNormComposite } from './ops/norm.js';
export {
  crossEntropy, crossEntropyComposite, linearCrossEntropy, linearCrossEntropyComposite, type CrossEntropyOptions, type LinearCrossEntropyOptions,
} from './ops/loss.js';
export { rope, ropeComposite, rotaryTables } from './ops/rope.js';
export { glu, gluComposite, type GluActivationName } from './ops/glu.js';
export { groupedLinear, groupedLinears, groupedLinearComposite } from './ops/fused/grouped_linear.js';
export { moeCombine, moeCombineComposite } from './ops/fused/moe_combine.js';
export { scaledDotProductAttention, attentionComposite, dropout, type AttentionOptions } from './ops/attention.js';
export { blockSparseAttention, blockSparseMask, type BlockSparseAttentionOptions } from './ops/sparse/block_sparse_attention.js';
export { BlockLayout } from './ops/sparse/block_layout.js';
export { type SparsityConfig, SPARSITY_MODES, makeLayout, parseSparsityConfig } from './ops/sparse/sparsity_config.js';
export { toArray, toFloat32Array, toTypedArray, item } from './ops/transfer.js';
export { copy_, fill_, copyWhere_ } from './ops/inplace.js';
export { pagedWrite_, pagedAttention, pagedAttentionComposite, type PagedLayout, type PagedAttentionOptions } from './ops/paged.js';
export { checkpoint, noGrad, withGradMode, isGradEnabled, runBackward } from './autograd/index.js';

import { unary } from './ops/elementwise.js';
import type { Tensor as T } from './tensor/tensor.js';
export const relu = (x: T): T => unary('relu', x);
export const silu = (x: T): T => unary('silu', x);
export const sigmoid = (x: T): T => unary('sigmoid', x);
export const tanh = (x: T): T => unary('tanh', x);
export const exp = (x: T): T => unary('exp', x);
export const log = (x: T): T => unary('log', x);
export const sqrt = (x: T): T => unary('sqrt', x);
export const gelu = (x: T, approximate: 'none' | 'tanh' = 'none'): T => unary(approximate === 'tanh' ? 'gelu_tanh' : 'gelu_erf', x);

export * as nn from './nn/index.js';
export { SafetensorsFile, saveSafetensors, type TensorInfo } from './io/safetensors.js';
export { CausalLM, type CausalLMInput, type CausalLMOutput, type LanguageModel, type Checkpointing } from './models/causal_lm.js';
export { KVCache } from './models/kv_cache.js';
export { PagedKVCache, type PagedSequence } from './models/paged_kv_cache.js';
export { BlockAllocator, prefixHashes } from './models/block_allocator.js';
export { SparseMoe, setExpertParallel, type ExpertLoad } from './models/moe.js';
export { loadBalancingLoss, routerZLoss } from './models/moe_losses.js';
export { type DecoderConfig } from './models/config.js';
export { loadPretrained, loadCausalLM, savePretrained, quantizeForInference, type LoadOptions, type Pretrained } from './models/load.js';
export { Gpt2LMHeadModel, type Gpt2Config } from './models/gpt2.js';
export { DecoderForSequenceClassification, type SequenceClassificationInput, type SequenceClassificationOutput } from './models/seq_cls.js';
export { DecoderBaseModel } from './models/base_model.js';
export { BertModel, type BertConfig, type BertOutput } from './models/bert.js';
export { type AnyModel, type SpeechModel, SUPPORTED_MODEL_TYPES, isSpeechModel } from './models/registry.js';
export { KV_CACHE_DTYPES, generate, generateStream, speculativeDecode, type GenerateOptions, type KvCacheDtype, type SpeculativeOptions, type SpeculativeStats } from './infer/index.js';
export {
  Tokenizer, loadTokenizer, applyChatTemplate, renderChatTemplate, TemplateError, detectChatTemplate, BUILTIN_TEMPLATES,
  type LoadTokenizerOptions, type ChatMessage, type ChatTemplateOptions, type BuiltinTemplateName,
} from './tokenizer/index.js';
export * as optim from './optim/index.js';
export * as data from './data/index.js';
export * as train from './train/index.js';
export { autocast, autocastDtype } from './tensor/autocast.js';
export { Trainer, type TrainerOptions } from './train/trainer.js';
export * as lora from './lora/index.js';
export * as preference from './preference/index.js';
export * as rl from './rl/index.js';
export * as quant from './quant/index.js';
export * as profile from './profile/index.js';
export * as embeddings from './embed/index.js';
export * as audio from './audio/index.js';
export { loadAudio, saveWav, resample, type LoadAudioOptions, type LoadedAudio, type ResampleOptions } from './audio/index.js';
export { WhisperForConditionalGeneration, loadWhisper, saveWhisper, shiftTokensRight, type WhisperConfig, type WhisperInput, type WhisperOutput } from './models/whisper.js';
export { whisperGenerate, whisperGenerationConfig, type WhisperGenerateOptions, type WhisperGeneration, type WhisperGenerationConfig } from './models/whisper_generate.js';
export { transcribe, type Transcription } from './models/whisper_transcribe.js';
export { EncodecModel, loadEncodec } from './models/encodec.js';
export { type EncodecConfig, encodecConfig } from './models/encodec_config.js';
export { generateCodes, decodeCodes } from './infer/tts_speak.js';
export { trainTts, type TtsRecord, type TtsTrainOptions } from './train/tts.js';
export { type TtsLayout, codesToTokens, tokensToCodes } from './train/tts_layout.js';
