// The typed configuration of the Llama-family decoder. Each family file maps its HF
// config.json onto it; the decoder reads only these fields, never a model_type.
import { checkParameterCount } from './families/hf_config.js';
import type { RoutingOrder } from './moe_routing.js';

export interface RopeScaling {
  type: 'default' | 'linear' | 'dynamic' | 'yarn' | 'llama3' | 'longrope';
  factor: number;
  /** llama3 */
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositionEmbeddings?: number;
  /** yarn */
  betaFast?: number;
  betaSlow?: number;
  attentionFactor?: number;
  /** longrope (Phi-3) */
  shortFactor?: number[];
  longFactor?: number[];
}

export interface MoeConfig {
  numExperts: number;
  topK: number;
  /** weight of the load-balancing loss added to the LM loss (Mixtral's router_aux_loss_coef) */
  auxLossCoef: number;
  /** HF output_router_logits: the loss includes auxLossCoef * aux loss unless the call says otherwise */
  outputRouterLogits: boolean;
  /** softmax over all experts then top-k (Mixtral, Qwen2-MoE), or top-k logits then softmax over them */
  routing: RoutingOrder;
  /** renormalise the top-k probabilities to sum 1 (Mixtral always; Qwen2-MoE's norm_topk_prob) */
  normTopkProb: boolean;
  /** expert capacity = ceil(factor * tokens * k / experts), slots over it dropped; 0 = dropless */
  capacityFactor: number;
  /** training-only multiplicative noise U(1 - j, 1 + j) on the block's input (router_jitter_noise) */
  jitterNoise: number;
  /** weight of ST-MoE's router z-loss added to the loss (0 = off) */
  zLossCoef: number;
  /** each routed expert's intermediate size (Mixtral: intermediate_size; Qwen2-MoE: moe_intermediate_size) */
  expertSize: number;
  /** the shared expert's intermediate size (Qwen2-MoE), 0 = none */
  sharedExpertSize: number;
  /** HF module names: `block_sparse_moe` with w1/w2/w3 experts, or `mlp` with gate/up/down_proj experts */
  naming: 'mixtral' | 'qwen2_moe';
  /** layers that keep a dense MLP (Qwen2-MoE's mlp_only_layers and decoder_sparse_step) */
  denseLayers: number[];
}

export interface DecoderConfig {
  modelType: string;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  /** fraction of head_dim that is rotated (1 for every family here) */
  partialRotaryFactor: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** bias on q/k/v projections (Qwen2) */
  qkvBias: boolean;
  /** bias on o_proj */
  oBias: boolean;
  mlpBias: boolean;
  activation: 'silu' | 'gelu_tanh' | 'gelu';
  /** RMSNorm scales by (offset + weight): 1 for Gemma */
  normOffset: number;
  /** multiply embeddings by sqrt(hidden_size) (Gemma) */
  scaleEmbeddings: boolean;
  /** per layer: sliding window length, 0 = global attention */
  slidingWindows: number[];
  /** scores scale; default 1/sqrt(headDim) (Gemma 2: query_pre_attn_scalar^-0.5) */
  attentionScale: number;
  attnSoftcap: number;
  finalSoftcap: number;
  /** RMSNorm on q and k per head before RoPE (Qwen3) */
  qkNorm: boolean;
  /** post-attention and pre/post feed-forward norms around each sublayer (Gemma 2) */
  sandwichNorms: boolean;
  /** fused qkv_proj and gate_up_proj weights (Phi-3) */
  fusedQkv: boolean;
  fusedGateUp: boolean;
  moe: MoeConfig | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
  /** std of the normal initialisation of Linear and Embedding weights (HF's initializer_range) */
  initializerRange: number;
}

export const DEFAULT_CONFIG: Omit<DecoderConfig, 'modelType' | 'vocabSize' | 'hiddenSize' | 'intermediateSize' | 'numLayers' | 'numHeads' | 'numKvHeads' | 'headDim' | 'slidingWindows' | 'attentionScale'> = {
  rmsNormEps: 1e-6,
  ropeTheta: 10000,
  ropeScaling: null,
  partialRotaryFactor: 1,
  maxPositionEmbeddings: 2048,
  tieWordEmbeddings: false,
  qkvBias: false,
  oBias: false,
  mlpBias: false,
  activation: 'silu',
  normOffset: 0,
  scaleEmbeddings: false,
  attnSoftcap: 0,
  finalSoftcap: 0,
  qkNorm: false,
  sandwichNorms: false,
  fusedQkv: false,
  fusedGateUp: false,
  moe: null,
  bosTokenId: null,
  eosTokenIds: [],
  padTokenId: null,
  initializerRange: 0.02,
};

/**
 * The parameters (elements) a decoder config implies: every weight and norm; biases are
 * lower-order and left out (this bounds allocation, it is not an exact count).
 * @example decoderParameterCount(llama(raw, 'config.json')) // 1.2e9 for Llama 3.2 1B (tied)
 */
export function decoderParameterCount(c: DecoderConfig): number {
  const { vocabSize: V, hiddenSize: D, intermediateSize: F, numHeads: H, numKvHeads: Hkv, headDim: hd } = c;
  const attention = D * (H + 2 * Hkv) * hd + H * hd * D + (c.qkNorm ? 2 * hd : 0);
  const m = c.moe;
  const sparse = m ? m.numExperts * 3 * D * m.expertSize + 3 * D * m.sharedExpertSize + D * (m.numExperts + 1) : 0;
  const sparseLayers = m ? c.numLayers - m.denseLayers.length : 0;
  const mlp = (sparseLayers * sparse + (c.numLayers - sparseLayers) * 3 * D * F) / c.numLayers;
  const norms = (c.sandwichNorms ? 4 : 2) * D;
  return c.numLayers * (attention + mlp + norms) + V * D * (c.tieWordEmbeddings ? 1 : 2) + D;
}

/**
 * The checks between fields of a decoder config (each field's own type and range is checked as it
 * is read, hf_config.ts); errors name the file and the config.json field.
 * @example checkDecoderConfig(llama(raw, 'model/config.json'), 'model/config.json')
 */
export function checkDecoderConfig(c: DecoderConfig, file: string): DecoderConfig {
  const field = (name: string, why: string): Error => new Error(`${file}: field '${name}' ${why}`);
  if (c.numHeads % c.numKvHeads !== 0) throw field('num_key_value_heads', `(${c.numKvHeads}) must divide num_attention_heads (${c.numHeads})`);
  // RoPE rotates pairs of dimensions (rotate_half); an odd head dim has no pairing
  if (c.headDim % 2 !== 0) throw field('head_dim', `(or hidden_size / num_attention_heads) is ${c.headDim}; it must be even for rotary embeddings`);
  if (c.partialRotaryFactor !== 1) throw field('partial_rotary_factor', `(${c.partialRotaryFactor}) is not supported yet (only 1)`);
  if (c.moe && c.moe.topK > c.moe.numExperts) throw field('num_experts_per_tok', `(${c.moe.topK}) must not exceed the number of experts (${c.moe.numExperts}: num_local_experts or num_experts)`);
  checkParameterCount(file, decoderParameterCount(c), `num_hidden_layers ${c.numLayers}, hidden_size ${c.hiddenSize}, intermediate_size ${c.intermediateSize}, vocab_size ${c.vocabSize}`);
  return c;
}
