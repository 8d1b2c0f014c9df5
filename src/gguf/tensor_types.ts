// Which ggml type each tensor gets for an export type. Norms, biases, the MoE router and
// rope_freqs stay float32 (as convert_hf_to_gguf.py and llama-quantize keep them). Quantized
// types follow llama-quantize's choices (llama_tensor_get_type): q4_0 stores output.weight as
// Q6_K; q4_k_m is Q4_K everywhere except output.weight and, on the layers use_more_bits picks,
// attn_v and ffn_down, which are Q6_K. A row length the block does not divide falls back
// (Q4_K -> Q4_0, Q6_K -> Q8_0, then F16; llama-quantize's Q4_K fallback is Q5_0, which Kestrel
// does not write).
import { type ExportType, GGML_TYPES, type GgmlTypeName } from './constants.js';
import type { ExportTensor } from './arch.js';

/** llama.cpp's use_more_bits: the first and last eighth of the layers and every third between. */
export const useMoreBits = (i: number, n: number): boolean => i < Math.floor(n / 8) || i >= Math.floor((7 * n) / 8) || (i - Math.floor(n / 8)) % 3 === 2;

const FALLBACK: Partial<Record<GgmlTypeName, GgmlTypeName>> = { Q4_K: 'Q4_0', Q6_K: 'Q8_0', Q4_0: 'F16', Q8_0: 'F16' };

function wanted(t: ExportTensor, type: ExportType, numLayers: number): GgmlTypeName {
  if (t.role !== 'matrix') return 'F32';
  const layer = /^blk\.(\d+)\./.exec(t.name);
  switch (type) {
    case 'f32': return 'F32';
    case 'f16': return 'F16';
    case 'bf16': return 'BF16';
    case 'q8_0': return 'Q8_0';
    case 'q4_0': return t.name === 'output.weight' ? 'Q6_K' : 'Q4_0';
    case 'q4_k_m':
      if (t.name === 'output.weight') return 'Q6_K';
      if (layer && /\.(attn_v|ffn_down|ffn_down_exps)\.weight$/.test(t.name) && useMoreBits(Number(layer[1]), numLayers)) return 'Q6_K';
      return 'Q4_K';
  }
}

/**
 * The ggml type tensor t is written in.
 * @example tensorType({ name: 'blk.0.attn_q.weight', shape: [64, 64], role: 'matrix', values }, 'q4_k_m', 2) // 'Q4_0' (64 % 256 != 0)
 */
export function tensorType(t: ExportTensor, type: ExportType, numLayers: number): GgmlTypeName {
  let g = wanted(t, type, numLayers);
  const row = t.shape[t.shape.length - 1];
  while (row % GGML_TYPES[g].blockSize !== 0) g = FALLBACK[g] ?? 'F32';
  return g;
}
