// HF parameter names <-> llama.cpp's GGUF tensor names (gguf-py constants.py TENSOR_NAMES and
// tensor_mapping.py), for the families Kestrel exports. One table of per-layer suffixes; the few
// family differences (Gemma 2's sandwich norms, Phi-3's fused projections) are rows of their own.

/** HF suffix after `model.layers.N.` -> GGUF suffix after `blk.N.` (weight/bias kept). */
const LAYER: [hf: string, gguf: string][] = [
  ['input_layernorm', 'attn_norm'],
  ['self_attn.q_proj', 'attn_q'], ['self_attn.k_proj', 'attn_k'], ['self_attn.v_proj', 'attn_v'],
  ['self_attn.qkv_proj', 'attn_qkv'], ['self_attn.o_proj', 'attn_output'],
  ['mlp.gate_proj', 'ffn_gate'], ['mlp.up_proj', 'ffn_up'], ['mlp.down_proj', 'ffn_down'],
  // Phi-3's gate_up_proj is one [2F, D] matrix; llama.cpp's phi3 graph reads it as ffn_up and splits it
  ['mlp.gate_up_proj', 'ffn_up'],
  ['block_sparse_moe.gate', 'ffn_gate_inp'],
  ['pre_feedforward_layernorm', 'ffn_norm'], ['post_feedforward_layernorm', 'post_ffw_norm'],
];

/** post_attention_layernorm is the pre-MLP norm in Llama, a post-attention norm in Gemma 2. */
const postAttention = (sandwich: boolean): string => (sandwich ? 'post_attention_norm' : 'ffn_norm');

/** Mixtral's experts are stacked into one 3-D tensor per projection: w1 gate, w2 down, w3 up. */
export const EXPERT_STACKS: Record<string, string> = { w1: 'ffn_gate_exps', w2: 'ffn_down_exps', w3: 'ffn_up_exps' };

const GLOBAL: [string, string][] = [['model.embed_tokens.weight', 'token_embd.weight'], ['model.norm.weight', 'output_norm.weight'], ['lm_head.weight', 'output.weight']];

/**
 * The GGUF name of a Llama-family HF parameter, or null when it has none (an expert: see EXPERT_STACKS).
 * @example decoderTensorName('model.layers.3.self_attn.q_proj.weight', false) // 'blk.3.attn_q.weight'
 */
export function decoderTensorName(hf: string, sandwich: boolean): string | null {
  for (const [h, g] of GLOBAL) if (hf === h) return g;
  const m = /^model\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(hf);
  if (!m) throw new Error(`gguf export: no GGUF name for parameter '${hf}'`);
  const [, layer, mid, kind] = m;
  if (mid.startsWith('block_sparse_moe.experts.')) return null;
  const row = mid === 'post_attention_layernorm' ? postAttention(sandwich) : LAYER.find(([h]) => h === mid)?.[1];
  if (!row) throw new Error(`gguf export: no GGUF name for parameter '${hf}'`);
  return `blk.${layer}.${row}.${kind}`;
}

/**
 * The HF name of a GGUF tensor of a Llama-family model (the inverse of decoderTensorName).
 * @example decoderHfName('blk.3.attn_q.weight', { sandwich: false, fusedGateUp: false }) // 'model.layers.3.self_attn.q_proj.weight'
 */
export function decoderHfName(gguf: string, o: { sandwich: boolean; fusedGateUp: boolean }): string {
  for (const [h, g] of GLOBAL) if (gguf === g) return h;
  const m = /^blk\.(\d+)\.(.+)\.(weight|bias)$/.exec(gguf);
  if (!m) throw new Error(`gguf: tensor '${gguf}' has no Kestrel parameter`);
  const [, layer, mid, kind] = m;
  const rows = LAYER.filter(([h]) => h !== (o.fusedGateUp ? 'mlp.up_proj' : 'mlp.gate_up_proj'));
  const hf = mid === postAttention(o.sandwich) ? 'post_attention_layernorm' : rows.find(([, g]) => g === mid)?.[0];
  if (!hf) throw new Error(`gguf: tensor '${gguf}' has no Kestrel parameter`);
  return `model.layers.${layer}.${hf}.${kind}`;
}

/** GPT-2: HF name -> GGUF name (Conv1D weights are stored transposed in HF, [in, out]). */
const GPT2: [RegExp, string][] = [
  [/^transformer\.wte\.weight$/, 'token_embd.weight'], [/^transformer\.wpe\.weight$/, 'position_embd.weight'],
  [/^transformer\.ln_f\.(weight|bias)$/, 'output_norm.$1'],
  [/^transformer\.h\.(\d+)\.ln_1\.(weight|bias)$/, 'blk.$1.attn_norm.$2'], [/^transformer\.h\.(\d+)\.attn\.c_attn\.(weight|bias)$/, 'blk.$1.attn_qkv.$2'],
  [/^transformer\.h\.(\d+)\.attn\.c_proj\.(weight|bias)$/, 'blk.$1.attn_output.$2'], [/^transformer\.h\.(\d+)\.ln_2\.(weight|bias)$/, 'blk.$1.ffn_norm.$2'],
  [/^transformer\.h\.(\d+)\.mlp\.c_fc\.(weight|bias)$/, 'blk.$1.ffn_up.$2'], [/^transformer\.h\.(\d+)\.mlp\.c_proj\.(weight|bias)$/, 'blk.$1.ffn_down.$2'],
];

export function gpt2TensorName(hf: string): string {
  for (const [re, g] of GPT2) if (re.test(hf)) return hf.replace(re, g);
  throw new Error(`gguf export: no GGUF name for GPT-2 parameter '${hf}'`);
}

const GPT2_BACK: [RegExp, string][] = [
  [/^token_embd\.weight$/, 'transformer.wte.weight'], [/^position_embd\.weight$/, 'transformer.wpe.weight'], [/^output_norm\.(weight|bias)$/, 'transformer.ln_f.$1'],
  [/^blk\.(\d+)\.attn_norm\.(weight|bias)$/, 'transformer.h.$1.ln_1.$2'], [/^blk\.(\d+)\.attn_qkv\.(weight|bias)$/, 'transformer.h.$1.attn.c_attn.$2'],
  [/^blk\.(\d+)\.attn_output\.(weight|bias)$/, 'transformer.h.$1.attn.c_proj.$2'], [/^blk\.(\d+)\.ffn_norm\.(weight|bias)$/, 'transformer.h.$1.ln_2.$2'],
  [/^blk\.(\d+)\.ffn_up\.(weight|bias)$/, 'transformer.h.$1.mlp.c_fc.$2'], [/^blk\.(\d+)\.ffn_down\.(weight|bias)$/, 'transformer.h.$1.mlp.c_proj.$2'],
];

export function gpt2HfName(gguf: string): string {
  for (const [re, h] of GPT2_BACK) if (re.test(gguf)) return gguf.replace(re, h);
  throw new Error(`gguf: tensor '${gguf}' has no GPT-2 parameter`);
}

/** GPT-2's Conv1D weights ([in, out] in HF) are the ones stored transposed. */
export const isGpt2Conv1D = (hf: string): boolean => /\.(c_attn|c_proj|c_fc)\.weight$/.test(hf);
