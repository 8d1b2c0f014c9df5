// What llama.cpp needs to run a Kestrel model: its GGUF architecture name, the hyperparameter keys
// ({arch}.block_count, ...; gguf-py constants.py Keys.LLM / Keys.Attention / Keys.Rope) and every
// weight under its GGUF name in GGUF's layout, following convert_hf_to_gguf.py per family:
// Llama/Mistral/Mixtral q,k rows permuted for pair-wise RoPE, Mixtral experts stacked, Gemma norms
// stored as 1 + w, GPT-2 Conv1D weights transposed, Llama 3 rope scaling as a rope_freqs tensor.
import type { DecoderConfig } from '../models/config.js';
import { CausalLM } from '../models/causal_lm.js';
import { Gpt2LMHeadModel, type Gpt2Config } from '../models/gpt2.js';
import { rotaryFrequencies } from '../models/rope_scaling.js';
import type { AnyModel } from '../models/registry.js';
import { toFloat32Array } from '../ops/transfer.js';
import type { Tensor } from '../tensor/tensor.js';
import { permuteRopeRows, transpose2d } from './rope_layout.js';
import { EXPERT_STACKS, decoderTensorName, gpt2TensorName, isGpt2Conv1D } from './tensor_names.js';
import { type GgufValue, gv } from './writer.js';

/** Kestrel model_type -> llama.cpp architecture (Mistral and Mixtral run as llama, as convert_hf_to_gguf.py writes them). */
export const GGUF_ARCH: Record<string, string> = { llama: 'llama', mistral: 'llama', mixtral: 'llama', qwen2: 'qwen2', gemma: 'gemma', gemma2: 'gemma2', phi3: 'phi3', gpt2: 'gpt2' };

/** Architectures whose q/k rows llama.cpp expects in pair-wise (GPT-J) RoPE order. */
export const PERMUTED_ARCHS = new Set(['llama']);

/** A tensor to export: GGUF name, PyTorch-order shape, float32 values in GGUF's layout. */
export interface ExportTensor {
  name: string;
  shape: number[];
  /** 'matrix' may be quantized; 'vector' (norms, biases), 'router' and 'freqs' stay float32 */
  role: 'matrix' | 'vector' | 'router' | 'freqs';
  values: () => Float32Array;
}

export interface ArchExport {
  arch: string;
  kv: [string, GgufValue][];
  tensors: ExportTensor[];
  /** things llama.cpp will run differently from Kestrel (said before writing) */
  warnings: string[];
}

function roleOf(name: string, shape: readonly number[]): ExportTensor['role'] {
  if (name.endsWith('ffn_gate_inp.weight')) return 'router';
  return shape.length >= 2 ? 'matrix' : 'vector';
}

/** The hyperparameter keys every Llama-family architecture reads. */
function decoderKv(arch: string, c: DecoderConfig): [string, GgufValue][] {
  const kv: [string, GgufValue][] = [
    [`${arch}.vocab_size`, gv.u32(c.vocabSize)], [`${arch}.context_length`, gv.u32(c.maxPositionEmbeddings)],
    [`${arch}.embedding_length`, gv.u32(c.hiddenSize)], [`${arch}.block_count`, gv.u32(c.numLayers)],
    [`${arch}.feed_forward_length`, gv.u32(c.intermediateSize)], [`${arch}.attention.head_count`, gv.u32(c.numHeads)],
    [`${arch}.attention.head_count_kv`, gv.u32(c.numKvHeads)], [`${arch}.attention.key_length`, gv.u32(c.headDim)],
    [`${arch}.attention.value_length`, gv.u32(c.headDim)], [`${arch}.rope.dimension_count`, gv.u32(c.headDim)],
    [`${arch}.attention.layer_norm_rms_epsilon`, gv.f32(c.rmsNormEps)], [`${arch}.rope.freq_base`, gv.f32(c.ropeTheta)],
  ];
  if (c.ropeScaling?.type === 'linear') kv.push([`${arch}.rope.scaling.type`, gv.str('linear')], [`${arch}.rope.scaling.factor`, gv.f32(c.ropeScaling.factor)]);
  // llama.cpp reads Llama 3 scaling from rope_freqs alone; Kestrel also keeps the config.json
  // fields (the factors do not determine them) so that loading the file back rebuilds rope_scaling
  const s = c.ropeScaling;
  if (s?.type === 'llama3') kv.push(['kestrel.rope_scaling', gv.str(JSON.stringify({ rope_type: 'llama3', factor: s.factor, low_freq_factor: s.lowFreqFactor, high_freq_factor: s.highFreqFactor, original_max_position_embeddings: s.originalMaxPositionEmbeddings }))]);
  if (c.moe) kv.push([`${arch}.expert_count`, gv.u32(c.moe.numExperts)], [`${arch}.expert_used_count`, gv.u32(c.moe.topK)]);
  if (arch === 'gemma2') {
    kv.push([`${arch}.attention.sliding_window`, gv.u32(Math.max(...c.slidingWindows))]);
    if (c.attnSoftcap) kv.push([`${arch}.attn_logit_softcapping`, gv.f32(c.attnSoftcap)]);
    if (c.finalSoftcap) kv.push([`${arch}.final_logit_softcapping`, gv.f32(c.finalSoftcap)]);
  }
  return kv;
}

/** Refuses what llama.cpp cannot be told (it would run a different model); returns what it runs differently. */
function checkDecoder(arch: string, c: DecoderConfig): string[] {
  const t = c.ropeScaling?.type ?? 'default';
  if (!['default', 'linear', 'llama3'].includes(t)) throw new Error(`gguf export: rope_scaling type '${t}' is not exported yet (default, linear and llama3 are)`);
  if (c.qkNorm) throw new Error(`gguf export: model_type '${c.modelType}' (q/k norms) is not exported yet`);
  if (arch === 'gemma2' && Math.abs(c.attentionScale - c.headDim ** -0.5) > 1e-9)
    throw new Error(`gguf export: gemma2 with query_pre_attn_scalar != head_dim is not exported (llama.cpp scales queries by head_dim^-0.5 except for its 27B size)`);
  const warnings: string[] = [];
  if (arch === 'llama' && c.slidingWindows.some((w) => w > 0))
    warnings.push(`${c.modelType}: llama.cpp's llama architecture has no sliding window (window ${Math.max(...c.slidingWindows)}); past that many tokens its output differs from Kestrel's`);
  return warnings;
}

/** llama.cpp's rope_freqs for Llama 3 scaling: base frequency / scaled frequency, per rotary pair (convert_hf_to_gguf.py). */
function llama3RopeFactors(c: DecoderConfig): Float32Array {
  const base = rotaryFrequencies({ ...c, ropeScaling: null }, 0).invFreq;
  const scaled = rotaryFrequencies(c, 0).invFreq;
  return base.map((b, i) => b / scaled[i]);
}

function decoderTensors(arch: string, c: DecoderConfig, sd: Record<string, Tensor>): ExportTensor[] {
  const out: ExportTensor[] = [];
  const permute = PERMUTED_ARCHS.has(arch);
  for (const [hf, t] of Object.entries(sd)) {
    const name = decoderTensorName(hf, c.sandwichNorms);
    if (name === null) continue; // an expert: stacked below
    const shape = [...t.shape];
    const heads = /\.q_proj\./.test(hf) ? c.numHeads : /\.k_proj\./.test(hf) ? c.numKvHeads : 0;
    const values = (): Float32Array => {
      const x = toFloat32Array(t);
      if (permute && heads) return permuteRopeRows(x, shape[0], heads);
      if (c.normOffset && name.endsWith('norm.weight')) return x.map((v) => v + c.normOffset);
      return x;
    };
    out.push({ name, shape, role: roleOf(name, shape), values });
  }
  if (c.moe) {
    const E = c.moe.numExperts;
    for (let l = 0; l < c.numLayers; l++)
      for (const [w, stack] of Object.entries(EXPERT_STACKS)) {
        const parts = Array.from({ length: E }, (_, e) => sd[`model.layers.${l}.block_sparse_moe.experts.${e}.${w}.weight`]);
        const values = (): Float32Array => {
          const all = new Float32Array(parts.reduce((n, p) => n + p.numel, 0));
          parts.forEach((p, e) => all.set(toFloat32Array(p), e * p.numel));
          return all;
        };
        out.push({ name: `blk.${l}.${stack}.weight`, shape: [E, ...parts[0].shape], role: 'matrix', values });
      }
  }
  if (c.ropeScaling?.type === 'llama3') out.push({ name: 'rope_freqs.weight', shape: [c.headDim / 2], role: 'freqs', values: () => llama3RopeFactors(c) });
  return out;
}

function gpt2Export(c: Gpt2Config, sd: Record<string, Tensor>): ArchExport {
  const kv: [string, GgufValue][] = [
    ['gpt2.vocab_size', gv.u32(c.vocabSize)], ['gpt2.context_length', gv.u32(c.maxPositions)], ['gpt2.embedding_length', gv.u32(c.hiddenSize)],
    ['gpt2.feed_forward_length', gv.u32(c.innerSize)], ['gpt2.block_count', gv.u32(c.numLayers)], ['gpt2.attention.head_count', gv.u32(c.numHeads)],
    ['gpt2.attention.layer_norm_epsilon', gv.f32(c.layerNormEps)],
  ];
  const tensors: ExportTensor[] = Object.entries(sd).map(([hf, t]) => {
    const name = gpt2TensorName(hf);
    const conv = isGpt2Conv1D(hf);
    const shape = conv ? [t.shape[1], t.shape[0]] : [...t.shape];
    return { name, shape, role: roleOf(name, shape), values: () => (conv ? transpose2d(toFloat32Array(t), t.shape[0], t.shape[1]) : toFloat32Array(t)) };
  });
  // GPT-2's head is the embedding; convert_hf_to_gguf.py writes it again as output.weight
  const wte = sd['transformer.wte.weight'];
  tensors.push({ name: 'output.weight', shape: [...wte.shape], role: 'matrix', values: () => toFloat32Array(wte) });
  return { arch: 'gpt2', kv, tensors, warnings: [] };
}

/**
 * The architecture keys and tensors of a causal LM in llama.cpp's layout.
 * @example const { arch, kv, tensors } = archExport(model) // arch 'llama', tensors[0].name 'token_embd.weight'
 */
export function archExport(model: AnyModel): ArchExport {
  const sd = model.stateDict();
  if (model instanceof Gpt2LMHeadModel) return gpt2Export(model.config, sd);
  if (!(model instanceof CausalLM)) throw new Error(`gguf export: only causal LMs export to GGUF (got ${model.constructor.name})`);
  const c = model.config;
  const arch = Object.hasOwn(GGUF_ARCH, c.modelType) ? GGUF_ARCH[c.modelType] : undefined;
  if (!arch) throw new Error(`gguf export: model_type '${c.modelType}' has no llama.cpp architecture in Kestrel's exporter (supported: ${Object.keys(GGUF_ARCH).join(', ')})`);
  const warnings = checkDecoder(arch, c);
  return { arch, kv: decoderKv(arch, c), tensors: decoderTensors(arch, c, sd), warnings };
}
