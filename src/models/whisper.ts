// Whisper (HF modeling_whisper.py, WhisperForConditionalGeneration): an encoder over log-mel
// features (conv1 k3 + GELU, conv2 k3 stride 2 + GELU, sinusoidal positions, pre-LN layers, final
// LayerNorm) and a decoder (learned positions, causal self-attention, cross-attention over the
// encoder output, pre-LN, final LayerNorm) whose LM head is tied to its token embedding.
// Attention scales q by head_dim^-0.5 and k_proj has no bias. Parameter names are HF's.
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
import { saveCheckpointFolder } from '../io/hf_folder.js';
import { type InitOpts, normal, zerosInit } from '../nn/init.js';
import { Embedding, LayerNorm, Linear } from '../nn/layers.js';
import { Module, Parameter } from '../nn/module.js';
import { CONFIG_LIMITS, ConfigReader, type Json, checkParameterCount } from './families/hf_config.js';
import { loadModelFolder } from './load.js';
import { finishLoading } from './registry.js';
import type { BackendName } from '../backend/kernels.js';
import { keep } from '../tensor/scope.js';
import { KVCache } from './kv_cache.js';

/**
 * The decoder's state across generation steps: its self-attention keys/values (grown one token at
 * a time) and the cross-attention keys/values of the encoder output, computed once per utterance.
 */
export interface WhisperDecoderCache {
  self: KVCache;
  /** per decoder layer: k, v [B, H, S, hd] */
  cross: { k: Tensor; v: Tensor }[];
}

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
  /** [B, len, D] -> [B, H, len, hd] */
  heads(t: Tensor): Tensor {
    const [B, len] = t.shape;
    return transpose(reshape(t, [B, len, this.H, this.D / this.H]), 1, 2);
  }
  /** the keys and values of a source sequence [B, S, D] (cross-attention reads the encoder output's once) */
  keysValues(source: Tensor): { k: Tensor; v: Tensor } {
    return { k: this.heads(this.k_proj.forward(source)), v: this.heads(this.v_proj.forward(source)) };
  }
  /**
   * Self-attention over x (appending to `selfCache` at `layer` when given), or cross-attention over
   * `cross` (the encoder output's keys and values).
   */
  forward(x: Tensor, o: { cross?: { k: Tensor; v: Tensor } | null; causal: boolean; selfCache?: KVCache | null; layer?: number }): Tensor {
    const [B, T] = x.shape;
    let kv = o.cross ?? this.keysValues(x);
    if (!o.cross && o.selfCache) kv = o.selfCache.update(o.layer ?? 0, kv.k, kv.v);
    const out = scaledDotProductAttention(this.heads(this.q_proj.forward(x)), kv.k, kv.v, { causal: o.causal });
    return this.out_proj.forward(reshape(transpose(out, 1, 2), [B, T, this.D]));
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
  forward(x: Tensor, o: { cross?: { k: Tensor; v: Tensor } | null; causal: boolean; selfCache?: KVCache | null; layer?: number }): Tensor {
    return tidy(() => {
      let h = add(x, this.self_attn.forward(this.self_attn_layer_norm.forward(x), { causal: o.causal, selfCache: o.selfCache, layer: o.layer }));
      if (this.encoder_attn && this.encoder_attn_layer_norm && o.cross)
        h = add(h, this.encoder_attn.forward(this.encoder_attn_layer_norm.forward(h), { cross: o.cross, causal: false }));
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

/** What the encoder and the decoder share: a position table, a stack of layers, a final LayerNorm. */
class WhisperStack extends Module {
  embed_positions: Embedding;
  layers: WhisperLayer[];
  layer_norm: LayerNorm;
  constructor(readonly c: WhisperConfig, s: { positions: number; layers: number; heads: number; ffn: number; cross: boolean }, init: InitOpts) {
    super();
    const D = c.dModel;
    this.embed_positions = new Embedding(s.positions, D, init);
    this.layers = Array.from({ length: s.layers }, () => new WhisperLayer(D, s.heads, s.ffn, s.cross, init));
    this.layer_norm = new LayerNorm(D, 1e-5, init);
  }
}

class WhisperEncoder extends WhisperStack {
  conv1: Conv1d;
  conv2: Conv1d;
  constructor(c: WhisperConfig, init: InitOpts) {
    super(c, { positions: c.maxSourcePositions, layers: c.encoderLayers, heads: c.encoderHeads, ffn: c.encoderFfn, cross: false }, init);
    const D = c.dModel;
    this.conv1 = new Conv1d(c.numMelBins, D, 3, 1, 1, init);
    this.conv2 = new Conv1d(D, D, 3, 2, 1, init);
    // the fixed sinusoidal table (HF stores it; it never trains); a lazily built model gets it from the checkpoint
    if (init.backend !== 'meta') {
      this.embed_positions.weight.dispose();
      this.embed_positions.weight = Parameter(tensor(sinusoids(c.maxSourcePositions, D), { shape: [c.maxSourcePositions, D], backend: init.backend }));
    }
    this.embed_positions.weight.requiresGrad_(false);
  }
  /** features [B, n_mels, 2 max_source_positions] -> [B, max_source_positions, D] */
  forward(features: Tensor): Tensor {
    const want = 2 * this.c.maxSourcePositions;
    if (features.ndim !== 3 || features.shape[1] !== this.c.numMelBins || features.shape[2] !== want)
      throw new Error(`whisper encoder: input features must be [B, ${this.c.numMelBins}, ${want}] (30 s of log-mel frames), got ${shapeStr(features.shape)}`);
    return tidy(() => {
      const x = unary('gelu_erf', this.conv2.forward(unary('gelu_erf', this.conv1.forward(features)))); // [B, D, 1500]
      let h = add(transpose(x, 1, 2), this.embed_positions.weight);
      for (const layer of this.layers) h = layer.forward(h, { causal: false });
      return this.layer_norm.forward(h);
    });
  }
}

class WhisperDecoder extends WhisperStack {
  embed_tokens: Embedding;
  constructor(c: WhisperConfig, init: InitOpts) {
    super(c, { positions: c.maxTargetPositions, layers: c.decoderLayers, heads: c.decoderHeads, ffn: c.decoderFfn, cross: true }, init);
    this.embed_tokens = new Embedding(c.vocabSize, c.dModel, { ...init, paddingIdx: c.padTokenId });
  }
  /** Cross-attention keys/values of every layer for an encoder output [B, S, D]. */
  crossKeysValues(encoderOut: Tensor): { k: Tensor; v: Tensor }[] {
    return this.layers.map((l) => l.encoder_attn!.keysValues(encoderOut));
  }
  /**
   * ids [B, T] after `cache.self.length` earlier tokens -> hidden states [B, T, D], attending the
   * encoder through `cross` (per layer); with a cache the new keys/values are appended to it.
   */
  forward(ids: Tensor, cross: { k: Tensor; v: Tensor }[], selfCache: KVCache | null = null): Tensor {
    const T = ids.shape[1];
    const past = selfCache?.length ?? 0;
    if (past + T > this.c.maxTargetPositions)
      throw new Error(`whisper decoder: ${past + T} tokens exceed max_target_positions ${this.c.maxTargetPositions}`);
    const h = tidy(() => {
      const tokens = this.embed_tokens.forward(ids);
      const scaled = this.c.scaleEmbedding ? tokens.mul(Math.sqrt(this.c.dModel)) : tokens;
      let x = add(scaled, narrow(this.embed_positions.weight, 0, past, T));
      this.layers.forEach((layer, i) => (x = layer.forward(x, { cross: cross[i], causal: true, selfCache, layer: i })));
      return this.layer_norm.forward(x);
    });
    selfCache?.advance(T);
    return h;
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
    return tidy(() => this.logits(this.model.decoder.forward(ids, this.model.decoder.crossKeysValues(encoderOut))));
  }

  /** proj_out, tied to the token embedding: [B, T, D] -> [B, T, V] */
  logits(hidden: Tensor): Tensor {
    return linear(hidden, this.model.decoder.embed_tokens.weight);
  }

  /**
   * A decoding cache for one encoder output [B, S, D]: the cross-attention keys/values of every
   * layer computed now, once, and an empty self-attention cache of maxLength tokens.
   */
  decoderCache(encoderOut: Tensor, maxLength = this.config.maxTargetPositions): WhisperDecoderCache {
    const c = this.config;
    const self = new KVCache(c.decoderLayers, encoderOut.shape[0], c.decoderHeads, maxLength, c.dModel / c.decoderHeads, { backend: encoderOut.backendName });
    // kept: the cache outlives the caller's tidy scopes until disposeDecoderCache
    const cross = tidy(() => this.model.decoder.crossKeysValues(encoderOut).map(({ k, v }) => ({ k: keep(k), v: keep(v) })));
    return { self, cross };
  }

  disposeDecoderCache(cache: WhisperDecoderCache): void {
    cache.self.dispose();
    for (const { k, v } of cache.cross) k.dispose(), v.dispose();
  }

  /** Logits [B, T, V] of the next tokens ids [B, T], appending them to the cache. */
  decodeStep(ids: Tensor, cache: WhisperDecoderCache): Tensor {
    return tidy(() => this.logits(this.model.decoder.forward(ids, cache.cross, cache.self)));
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
  return loadModelFolder(dir, {
    modelType: 'whisper', backend: opts.backend,
    build: (config, file) => {
      const model = new WhisperForConditionalGeneration(whisperConfig(config, file), { backend: 'meta' });
      for (const [name, p] of model.namedParameters()) p.name = name;
      return model;
    },
    after: finishLoading,
  });
}

/**
 * Writes an HF Whisper folder transformers loads: config.json (the one loaded, as given),
 * generation_config.json when given, and model.safetensors with HF's names (proj_out stays tied,
 * so it is not written, as transformers writes it).
 * @example saveWhisper('out/', model, readJson('whisper/config.json'), readJson('whisper/generation_config.json'))
 */
export function saveWhisper(dir: string, model: WhisperForConditionalGeneration, hfConfig: Json, generationConfig: Json | null = null): void {
  saveCheckpointFolder(dir, { config: hfConfig, generationConfig, tensors: model.stateDict() });
}
