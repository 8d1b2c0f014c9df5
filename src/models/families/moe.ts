// The mixture-of-experts fields of Mixtral's and Qwen2-MoE's config.json (transformers 4.44), plus
// the optional fields Kestrel reads for training choices no HF decoder config carries:
// `moe_routing` ('softmax_topk' | 'topk_softmax'), `capacity_factor` (0 = dropless) and
// `router_z_loss_coef` (Switch/NLLB-MoE's name for the z-loss weight).
import type { DecoderConfig, MoeConfig } from '../config.js';
import type { RoutingOrder } from '../moe_routing.js';
import { CONFIG_LIMITS, ConfigReader, type Json } from './hf_config.js';
import { baseConfig, qwen2 } from './llama.js';

const ROUTING_ORDERS: readonly RoutingOrder[] = ['softmax_topk', 'topk_softmax'];

/** The fields both families share (top-k, losses, routing choices). */
export function moeCommon(r: ConfigReader): Pick<MoeConfig, 'topK' | 'auxLossCoef' | 'outputRouterLogits' | 'routing' | 'capacityFactor' | 'zLossCoef'> {
  const routing = r.str('moe_routing', 'softmax_topk') as RoutingOrder;
  if (!ROUTING_ORDERS.includes(routing)) throw r.error('moe_routing', `must be one of ${ROUTING_ORDERS.join(', ')}, got ${JSON.stringify(routing)}`);
  const capacityFactor = r.num('capacity_factor', 0);
  if (capacityFactor < 0) throw r.error('capacity_factor', `must be >= 0 (0 = dropless), got ${capacityFactor}`);
  return {
    topK: r.size('num_experts_per_tok', CONFIG_LIMITS.experts),
    auxLossCoef: r.num('router_aux_loss_coef', 0.001),
    outputRouterLogits: r.bool('output_router_logits', false),
    routing,
    capacityFactor,
    zLossCoef: r.num('router_z_loss_coef', 0),
  };
}

/** Layers whose MLP stays dense: HF's `layer in mlp_only_layers or (layer + 1) % decoder_sparse_step != 0`. */
function qwen2MoeDenseLayers(r: ConfigReader, numLayers: number): number[] {
  const step = r.size('decoder_sparse_step', CONFIG_LIMITS.layers, 1);
  const only = r.raw.mlp_only_layers ?? [];
  if (!Array.isArray(only) || !only.every((l) => Number.isInteger(l) && l >= 0))
    throw r.error('mlp_only_layers', `must be a list of layer indices, got ${JSON.stringify(only)}`);
  return Array.from({ length: numLayers }, (_, i) => i).filter((i) => (only as number[]).includes(i) || (i + 1) % step !== 0);
}

/** Qwen2-MoE: Qwen2's attention, routed experts of moe_intermediate_size and a gated shared expert. */
export function qwen2Moe(raw: Json, file: string): DecoderConfig {
  const r = new ConfigReader(raw, file);
  const c = qwen2(raw, file);
  return {
    ...c,
    moe: {
      ...moeCommon(r),
      numExperts: r.size('num_experts', CONFIG_LIMITS.experts),
      normTopkProb: r.bool('norm_topk_prob', false),
      jitterNoise: 0,
      expertSize: r.size('moe_intermediate_size', CONFIG_LIMITS.intermediate),
      sharedExpertSize: r.int('shared_expert_intermediate_size', 0),
      naming: 'qwen2_moe',
      denseLayers: qwen2MoeDenseLayers(r, c.numLayers),
    },
  };
}

/** Mixtral: every MLP is a sparse MoE of SwiGLU experts. */
export function mixtral(raw: Json, file: string): DecoderConfig {
  const r = new ConfigReader(raw, file);
  const c = baseConfig(raw, file);
  return {
    ...c,
    moe: {
      ...moeCommon(r),
      numExperts: r.size('num_local_experts', CONFIG_LIMITS.experts),
      normTopkProb: true,
      jitterNoise: r.num('router_jitter_noise', 0),
      expertSize: c.intermediateSize,
      sharedExpertSize: 0,
      naming: 'mixtral',
      denseLayers: [],
    },
    // Mixtral's eager mask ignores sliding_window in 4.44 (only flash attention applies it)
    slidingWindows: new Array(c.numLayers).fill(0),
  };
}
