// Whisper (HF modeling_whisper.py, WhisperForConditionalGeneration): an encoder over log-mel
// features (conv1 k3 + GELU, conv2 k3 stride 2 + GELU, sinusoidal positions, pre-LN layers, final
// LayerNorm) and a decoder (learned positions, causal self-attention, cross-attention over the
// encoder output, pre-LN, final LayerNorm) whose LM head is tied to its token embedding.
// Attention scales q by head_dim^-0.5 and k_proj has no bias. Parameter names are HF's.
import { join } from 'node:path';
import { conv1d } from '../ops/conv.js';
import { scaledDotProductAttention } from '../ops/attention.js';
import { full, tensor } from '../ops/creation.js';
import { add, unary, where, compare } from '../ops/elementwise.js';
import { crossEntropy } from '../ops/loss.js';
import { linear } from '../ops/matmul.js';
import { cat } from '../ops/indexing.js';
import { narrow, reshape, transpose } from '../ops/view.js';
import { shapeStr } from '../tensor/layout.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { CheckpointFolder } from '../io/hf_folder.js';
import { type InitOpts, normal, zerosInit } from '../nn/init.js';
import { Embedding, LayerNorm, Linear } from '../nn/layers.js';
import { Module, Parameter } from '../nn/module.js';
import { CONFIG_LIMITS, ConfigReader, type Json, checkParameterCount } from './families/hf_config.js';
import { loadWeights } from './load.js';
import type { BackendName } from '../backend/kernels.js';

export interface WhisperConfig {
  modelType: 'whisper';
  vocabSize: number;
  numMelBins: number;
  dModel: number;
  encoderLayers: number;
  decoderLayers: number;
  encoderHeads: number;
  decoderHeads: number;
  encoderFfn: number;
  decoderFfn: number;
  maxSourcePositions: number;
  maxTargetPositions: number;
  /** multiply token embeddings by sqrt(d_model) */
  scaleEmbedding: boolean;
  padTokenId: number;
  decoderStartTokenId: number;
}

export function whisperConfig(raw: Json, file: string): WhisperConfig {
  const r = new ConfigReader(raw, file);
  const act = r.str('activation_function', 'gelu');
  if (act !== 'gelu') throw new Error(`${file}: activation_function '${act}' is not supported for whisper (gelu)`);
  const c: WhisperConfig = {
    modelType: 'whisper', vocabSize: r.size('vocab_size', CONFIG_LIMITS.vocab), numMelBins: r.size('num_mel_bins', 1024, 80),
    dModel: r.size('d_model', CONFIG_LIMITS.hidden), encoderLayers: r.size('encoder_layers', CONFIG_LIMITS.layers),
    decoderLayers: r.size('decoder_layers', CONFIG_LIMITS.layers), encoderHeads: r.size('encoder_attention_heads', CONFIG_LIMITS.heads),
    decoderHeads: r.size('decoder_attention_heads', CONFIG_LIMITS.heads), encoderFfn: r.size('encoder_ffn_dim', CONFIG_LIMITS.intermediate),
    decoderFfn: r.size('decoder_ffn_dim', CONFIG_LIMITS.intermediate), maxSourcePositions: r.size('max_source_positions', CONFIG_LIMITS.positions, 1500),
    maxTargetPositions: r.size('max_target_positions', CONFIG_LIMITS.positions, 448), scaleEmbedding: r.bool('scale_embedding', false),
    padTokenId: r.ids('pad_token_id')[0] ?? 50256, decoderStartTokenId: r.ids('decoder_start_token_id')[0] ?? 50257,
  };
  for (const [heads, field] of [[c.encoderHeads, 'encoder_attention_heads'], [c.decoderHeads, 'decoder_attention_heads']] as const)
    if (c.dModel % heads !== 0) throw r.error(field, `(${heads}) does not divide d_model (${c.dModel})`);
  const D = c.dModel;
  const layer = (ffn: number, cross: boolean): number => (cross ? 8 : 4) * D * D + 2 * D * ffn;
  const count = c.vocabSize * D + (c.maxSourcePositions + c.maxTargetPositions) * D + 3 * D * (c.numMelBins + D) +
    c.encoderLayers * layer(c.encoderFfn, false) + c.decoderLayers * layer(c.decoderFfn, true);
  checkParameterCount(file, count, `d_model ${D}, ${c.encoderLayers}+${c.decoderLayers} layers, vocab_size ${c.vocabSize}`);
  return c;
}

/** torch.nn.Conv1d with weight [out, in, k] and bias [out]. */
export class Conv1d extends Module {
  weight: Tensor;
  bias: Tensor;
  constructor(nIn: number, nOut: number, readonly kernel: number, readonly stride: number, readonly padding: number, init: InitOpts) {
    super();
    const bound = 1 / Math.sqrt(nIn * kernel);
    this.weight = Parameter(normal([nOut, nIn, kernel], bound, init));
    this.bias = Parameter(zerosInit([nOut], init));
  }
  forward(x: Tensor): Tensor {
    return conv1d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding });
  }
}

/** Multi-head attention; kv from `source` (cross-attention) or from x (self-attention). */
class WhisperAttention extends Module {
  q_proj: Linear;
  k_proj: Linear;
  v_proj: Linear;
  out_proj: Linear;
  constructor(readonly D: number, readonly H: number, init: InitOpts) {
    super();
    this.q_proj = new Linear(D, D, init);
    this.k_proj = new Linear(D, D, { ...init, bias: false });
    this.v_proj = new Linear(D, D, init);
    this.out_proj = new Linear(D, D, init);
  }
  forward(x: Tensor, source: Tensor | null, causal: boolean): Tensor {
    const [B, T] = x.shape;
    const kv = source ?? x;
    const S = kv.shape[1];
    const hd = this.D / this.H;
    const heads = (t: Tensor, len: number): Tensor => transpose(reshape(t, [B, len, this.H, hd]), 1, 2); // [B, H, len, hd]
    const o = scaledDotProductAttention(heads(this.q_proj.forward(x), T), heads(this.k_proj.forward(kv), S), heads(this.v_proj.forward(kv), S), { causal });
    return this.out_proj.forward(reshape(transpose(o, 1, 2), [B, T, this.D]));
  }
}

class WhisperLayer extends Module {
  self_attn: WhisperAttention;
  self_attn_layer_norm: LayerNorm;
  encoder_attn: WhisperAttention | null;
  encoder_attn_layer_norm: LayerNorm | null;
  fc1: Linear;
  fc2: Linear;
  final_layer_norm: LayerNorm;
  constructor(D: number, H: number, ffn: number, cross: boolean, init: InitOpts) {
    super();
    this.self_attn = new WhisperAttention(D, H, init);
    this.self_attn_layer_norm = new LayerNorm(D, 1e-5, init);
    this.encoder_attn = cross ? new WhisperAttention(D, H, init) : null;
    this.encoder_attn_layer_norm = cross ? new LayerNorm(D, 1e-5, init) : null;
    this.fc1 = new Linear(D, ffn, init);
    this.fc2 = new Linear(ffn, D, init);
    this.final_layer_norm = new LayerNorm(D, 1e-5, init);
  }
  /** pre-LN residual blocks: self-attention, cross-attention (decoder), MLP */
  forward(x: Tensor, encoderOut: Tensor | null, causal: boolean): Tensor {
    return tidy(() => {
      let h = add(x, this.self_attn.forward(this.self_attn_layer_norm.forward(x), null, causal));
      if (this.encoder_attn && this.encoder_attn_layer_norm && encoderOut)
        h = add(h, this.encoder_attn.forward(this.encoder_attn_layer_norm.forward(h), encoderOut, false));
      return add(h, this.fc2.forward(unary('gelu_erf', this.fc1.forward(this.final_layer_norm.forward(h)))));
    });
  }
}

/**
 * Whisper's fixed sinusoidal table [length, D]: sin(t / 10000^(i / (D/2 - 1))) over the first half
 * of the channels, cos over the second, rounded to float32 at each step as HF's torch code does
 * (at t ~ 1500 the float32 angle is off by ~1e-4, and the checkpoints store that table).
 */
export function sinusoids(length: number, D: number): Float32Array {
  const f = Math.fround;
  const half = D / 2;
  const step = f(Math.log(10000) / (half - 1));
  const out = new Float32Array(length * D);
  for (let i = 0; i < half; i++) {
    const inv = f(Math.exp(f(-step * i)));
    for (let t = 0; t < length; t++) {
      const a = f(t * inv);
      out[t * D + i] = Math.sin(a);
      out[t * D + half + i] = Math.cos(a);
    }
  }
  return out;
}

class WhisperEncoder extends Module {
  conv1: Conv1d;
  conv2: Conv1d;
  embed_positions: Embedding;
  layers: WhisperLayer[];
  layer_norm: LayerNorm;
  constructor(readonly c: WhisperConfig, init: InitOpts) {
    super();
    const D = c.dModel;
    this.conv1 = new Conv1d(c.numMelBins, D, 3, 1, 1, init);
    this.conv2 = new Conv1d(D, D, 3, 2, 1, init);
    // the fixed sinusoidal table (HF stores it; it never trains); a lazily built model gets it from the checkpoint
    this.embed_positions = new Embedding(c.maxSourcePositions, D, init);
    if (init.backend !== 'meta') {
      this.embed_positions.weight.dispose();
      this.embed_positions.weight = Parameter(tensor(sinusoids(c.maxSourcePositions, D), { shape: [c.maxSourcePositions, D], backend: init.backend }));
    }
    this.embed_positions.weight.requiresGrad_(false);
    this.layers = Array.from({ length: c.encoderLayers }, () => new WhisperLayer(D, c.encoderHeads, c.encoderFfn, false, init));
    this.layer_norm = new LayerNorm(D, 1e-5, init);
  }
  /** features [B, n_mels, 2 max_source_positions] -> [B, max_source_positions, D] */
  forward(features: Tensor): Tensor {
    const want = 2 * this.c.maxSourcePositions;
    if (features.ndim !== 3 || features.shape[1] !== this.c.numMelBins || features.shape[2] !== want)
      throw new Error(`whisper encoder: input features must be [B, ${this.c.numMelBins}, ${want}] (30 s of log-mel frames), got ${shapeStr(features.shape)}`);
    return tidy(() => {
      const x = unary('gelu_erf', this.conv2.forward(unary('gelu_erf', this.conv1.forward(features)))); // [B, D, 1500]
      let h = add(transpose(x, 1, 2), this.embed_positions.weight);
      for (const layer of this.layers) h = layer.forward(h, null, false);
      return this.layer_norm.forward(h);
    });
  }
}

class WhisperDecoder extends Module {
  embed_tokens: Embedding;
  embed_positions: Embedding;
  layers: WhisperLayer[];
  layer_norm: LayerNorm;
  constructor(readonly c: WhisperConfig, init: InitOpts) {
    super();
    const D = c.dModel;
    this.embed_tokens = new Embedding(c.vocabSize, D, { ...init, paddingIdx: c.padTokenId });
    this.embed_positions = new Embedding(c.maxTargetPositions, D, init);
    this.layers = Array.from({ length: c.decoderLayers }, () => new WhisperLayer(D, c.decoderHeads, c.decoderFfn, true, init));
    this.layer_norm = new LayerNorm(D, 1e-5, init);
  }
  /** ids [B, T] attending the encoder output [B, S, D] -> hidden states [B, T, D] */
  forward(ids: Tensor, encoderOut: Tensor): Tensor {
    const T = ids.shape[1];
    if (T > this.c.maxTargetPositions) throw new Error(`whisper decoder: ${T} tokens exceed max_target_positions ${this.c.maxTargetPositions}`);
    return tidy(() => {
      const tokens = this.embed_tokens.forward(ids);
      const scaled = this.c.scaleEmbedding ? tokens.mul(Math.sqrt(this.c.dModel)) : tokens;
      let h = add(scaled, narrow(this.embed_positions.weight, 0, 0, T));
      for (const layer of this.layers) h = layer.forward(h, encoderOut, true);
      return this.layer_norm.forward(h);
    });
  }
}

class WhisperModel extends Module {
  encoder: WhisperEncoder;
  decoder: WhisperDecoder;
  constructor(c: WhisperConfig, init: InitOpts) {
    super();
    this.encoder = new WhisperEncoder(c, init);
    this.decoder = new WhisperDecoder(c, init);
  }
}

export interface WhisperInput {
  /** log-mel features [B, n_mels, 3000] (audio/whisper_features.ts) */
  inputFeatures: Tensor;
  /** decoder ids [B, T]; default: labels shifted right behind decoder_start_token_id */
  decoderInputIds?: Tensor;
  /** int64 targets [B, T] aligned with the logits (-100 = ignored) */
  labels?: Tensor;
}

export interface WhisperOutput {
  logits: Tensor;
  loss: Tensor | null;
  encoderLastHiddenState: Tensor;
}

/**
 * transformers' shift_tokens_right: [start, labels[:, :-1]] with -100 replaced by the pad id.
 * @example shiftTokensRight(labels, 50257, 50258)
 */
export function shiftTokensRight(labels: Tensor, padTokenId: number, startTokenId: number): Tensor {
  const [B, T] = labels.shape;
  return tidy(() => {
    const start = full([B, 1], startTokenId, { dtype: labels.dtype, backend: labels.backendName });
    const shifted = cat([start, narrow(labels, 1, 0, T - 1)], 1);
    return where(compare('eq', shifted, -100), padTokenId, shifted);
  });
}

export class WhisperForConditionalGeneration extends Module {
  model: WhisperModel;
  constructor(readonly config: WhisperConfig, init: InitOpts = {}) {
    super();
    this.model = new WhisperModel(config, init);
  }

  /** The encoder output [B, 1500, D] for log-mel features [B, n_mels, 3000] (computed once per utterance). */
  encode(inputFeatures: Tensor): Tensor {
    return this.model.encoder.forward(inputFeatures);
  }

  /** Logits [B, T, V] over the tied head (proj_out = decoder.embed_tokens) given the encoder output. */
  decode(ids: Tensor, encoderOut: Tensor): Tensor {
    return tidy(() => linear(this.model.decoder.forward(ids, encoderOut), this.model.decoder.embed_tokens.weight));
  }

  forward(input: WhisperInput): WhisperOutput {
    const { labels } = input;
    if (!input.decoderInputIds && !labels) throw new Error('whisper forward: pass decoderInputIds or labels');
    return tidy(() => {
      const ids = input.decoderInputIds ?? shiftTokensRight(labels!, this.config.padTokenId, this.config.decoderStartTokenId);
      const encoderLastHiddenState = this.encode(input.inputFeatures);
      const logits = this.decode(ids, encoderLastHiddenState);
      const loss = labels ? crossEntropy(logits, labels) : null;
      return { logits, loss, encoderLastHiddenState };
    });
  }
}

/**
 * Loads an HF Whisper folder (config.json + model.safetensors, sharded or not), strictly: every
 * tensor present with its shape, none left over (proj_out is tied, so it is not stored).
 * @example const model = loadWhisper('whisper-tiny'); model.forward({ inputFeatures, labels })
 */
export function loadWhisper(dir: string, opts: { backend?: BackendName } = {}): WhisperForConditionalGeneration {
  const folder = new CheckpointFolder(dir);
  let model: WhisperForConditionalGeneration | null = null;
  try {
    const configFile = join(dir, 'config.json');
    if (folder.config.model_type !== 'whisper') throw new Error(`${configFile}: model_type ${JSON.stringify(folder.config.model_type)} is not 'whisper'`);
    model = new WhisperForConditionalGeneration(whisperConfig(folder.config, configFile), { backend: 'meta' });
    for (const [name, p] of model.namedParameters()) p.name = name;
    loadWeights(model, folder, { configFile, backend: opts.backend });
    // the sinusoidal table stays frozen after loading
    model.model.encoder.embed_positions.weight.requiresGrad_(false);
    return model.eval();
  } catch (e) {
    model?.dispose();
    throw e;
  } finally {
    folder.close();
  }
}
