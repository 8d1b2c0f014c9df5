// BERT encoder (HF modeling_bert.py BertModel): word + position + token-type embeddings with
// LayerNorm, post-LayerNorm encoder layers with bidirectional attention over a padding mask,
// and the tanh pooler on the first token. Used for embeddings and classification heads.
import { scaledDotProductAttention } from '../ops/attention.js';
import { arange, zeros } from '../ops/creation.js';
import { backendOf } from '../backend/index.js';
import { needsGrad } from '../ops/dispatch.js';
import { add, to, unary } from '../ops/elementwise.js';
import { cat } from '../ops/indexing.js';
import { linear } from '../ops/matmul.js';
import { cachedWeight, weightCacheActive } from '../ops/fused/weight_cache.js';
import { addLayerNorm } from '../ops/fused/add_layer_norm.js';
import { linearGelu } from '../ops/fused/linear_gelu.js';
import { contiguous, expand, permute, reshape, select, transpose, unsqueeze } from '../ops/view.js';
import { shapeStr } from '../tensor/layout.js';
import { autocastDtype } from '../tensor/autocast.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import type { InitOpts } from '../nn/init.js';
import { Embedding, LayerNorm, Linear } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import { paddingMask } from './causal_lm.js';
import { CONFIG_LIMITS, ConfigReader, type Json, checkParameterCount } from './families/hf_config.js';

export interface BertConfig {
  modelType: 'bert';
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  maxPositions: number;
  typeVocabSize: number;
  layerNormEps: number;
  activation: 'gelu_erf' | 'gelu_tanh' | 'relu';
  padTokenId: number | null;
}

export function bertConfig(raw: Json, file: string): BertConfig {
  const r = new ConfigReader(raw, file);
  const pos = r.str('position_embedding_type', 'absolute');
  if (pos !== 'absolute') throw new Error(`${file}: position_embedding_type '${pos}' is not supported (absolute)`);
  const act = r.str('hidden_act', 'gelu');
  const activation = act === 'gelu' ? 'gelu_erf' : act === 'gelu_new' ? 'gelu_tanh' : act === 'relu' ? 'relu' : null;
  if (!activation) throw new Error(`${file}: hidden_act '${act}' is not supported for bert (gelu, gelu_new, relu)`);
  const H = r.size('num_attention_heads', CONFIG_LIMITS.heads);
  const D = r.size('hidden_size', CONFIG_LIMITS.hidden);
  if (D % H !== 0) throw r.error('hidden_size', `(${D}) is not divisible by num_attention_heads (${H})`);
  const c: BertConfig = {
    modelType: 'bert', vocabSize: r.size('vocab_size', CONFIG_LIMITS.vocab), hiddenSize: D, numLayers: r.size('num_hidden_layers', CONFIG_LIMITS.layers),
    numHeads: H, intermediateSize: r.size('intermediate_size', CONFIG_LIMITS.intermediate),
    maxPositions: r.size('max_position_embeddings', CONFIG_LIMITS.positions), typeVocabSize: r.size('type_vocab_size', CONFIG_LIMITS.vocab, 2),
    layerNormEps: r.positive('layer_norm_eps', 1e-12), activation, padTokenId: r.ids('pad_token_id')[0] ?? null,
  };
  // the three embedding tables, per layer q/k/v/output (4 D^2) and the MLP (2 D F), the pooler (D^2)
  const count = (c.vocabSize + c.maxPositions + c.typeVocabSize) * D + c.numLayers * (4 * D * D + 2 * D * c.intermediateSize) + D * D;
  checkParameterCount(file, count, `num_hidden_layers ${c.numLayers}, hidden_size ${D}, intermediate_size ${c.intermediateSize}, vocab_size ${c.vocabSize}`);
  return c;
}

class BertEmbeddings extends Module {
  word_embeddings: Embedding;
  position_embeddings: Embedding;
  token_type_embeddings: Embedding;
  LayerNorm: LayerNorm;
  constructor(c: BertConfig, init: InitOpts) {
    super();
    this.word_embeddings = new Embedding(c.vocabSize, c.hiddenSize, { ...init, paddingIdx: c.padTokenId });
    this.position_embeddings = new Embedding(c.maxPositions, c.hiddenSize, init);
    this.token_type_embeddings = new Embedding(c.typeVocabSize, c.hiddenSize, init);
    this.LayerNorm = new LayerNorm(c.hiddenSize, c.layerNormEps, init);
  }
}

class SelfAttention extends Module {
  query: Linear;
  key: Linear;
  value: Linear;
  constructor(readonly c: BertConfig, init: InitOpts) {
    super();
    this.query = new Linear(c.hiddenSize, c.hiddenSize, init);
    this.key = new Linear(c.hiddenSize, c.hiddenSize, init);
    this.value = new Linear(c.hiddenSize, c.hiddenSize, init);
  }
  forward(x: Tensor, mask: Tensor | null): Tensor {
    const [B, T, D] = x.shape;
    const H = this.c.numHeads;
    const qkv = this.fusedQkv(x);
    if (qkv) return reshape(transpose(scaledDotProductAttention(qkv[0], qkv[1], qkv[2], { mask }), 1, 2), [B, T, D]);
    const heads = (t: Tensor): Tensor => transpose(reshape(t, [B, T, H, D / H]), 1, 2);
    const o = scaledDotProductAttention(heads(this.query.forward(x)), heads(this.key.forward(x)), heads(this.value.forward(x)), { mask });
    return reshape(transpose(o, 1, 2), [B, T, D]);
  }

  /**
   * Inference inside withWeightCache (k.embeddings.encode): q, k, v [B, H, T, hd] from one GEMM over the
   * cached [3D, D] weight, split into heads by one copy (that also rounds them to the autocast dtype the
   * attention kernel takes), instead of three GEMMs, three input casts and three head copies. Null when
   * it does not apply (training, LoRA/quantized layers, no bias, no cache scope).
   */
  private fusedQkv(x: Tensor): [Tensor, Tensor, Tensor] | null {
    const lin = [this.query, this.key, this.value];
    if (!weightCacheActive() || needsGrad(x, ...lin.flatMap((l) => [l.weight, l.bias]))) return null;
    if (!lin.every((l) => l.constructor === Linear && l.bias)) return null;
    const [B, T, D] = x.shape;
    const H = this.c.numHeads;
    const ac = autocastDtype();
    // under autocast only the rounded concatenation is kept (the GEMM reads nothing else)
    const w = cachedWeight(this.query.weight, `qkv ${ac ?? 'as is'}`, () => (ac ? to(cat(lin.map((l) => l.weight), 0), ac) : cat(lin.map((l) => l.weight), 0)));
    const b = cachedWeight(this.query.bias!, 'qkv', () => cat(lin.map((l) => l.bias!), 0));
    // [B, T, 3, H, hd] -> [3, B, H, T, hd], contiguous, so each of q, k, v is a contiguous [B, H, T, hd]
    const split = permute(reshape(linear(x, w, b), [B, T, 3, H, D / H]), [2, 0, 3, 1, 4]);
    const packed = ac && backendOf(x).halfAttention ? to(split, ac) : contiguous(split);
    return [select(packed, 0, 0), select(packed, 0, 1), select(packed, 0, 2)];
  }
}

/** dense -> residual add -> LayerNorm (BertSelfOutput / BertOutput); the add and the norm are one fused op. */
class AddNorm extends Module {
  dense: Linear;
  LayerNorm: LayerNorm;
  constructor(nIn: number, c: BertConfig, init: InitOpts) {
    super();
    this.dense = new Linear(nIn, c.hiddenSize, init);
    this.LayerNorm = new LayerNorm(c.hiddenSize, c.layerNormEps, init);
  }
  forward(x: Tensor, residual: Tensor): Tensor {
    const ln = this.LayerNorm;
    return addLayerNorm(this.dense.forward(x), residual, ln.weight, ln.bias, ln.eps);
  }
}

class BertAttention extends Module {
  self: SelfAttention;
  output: AddNorm;
  constructor(c: BertConfig, init: InitOpts) {
    super();
    this.self = new SelfAttention(c, init);
    this.output = new AddNorm(c.hiddenSize, c, init);
  }
}

class Intermediate extends Module {
  dense: Linear;
  constructor(readonly c: BertConfig, init: InitOpts) {
    super();
    this.dense = new Linear(c.hiddenSize, c.intermediateSize, init);
  }
  forward(x: Tensor): Tensor {
    const [d, act] = [this.dense, this.c.activation];
    // a plain Linear (LoRA and quantized layers are other classes) in the compute dtype: GEMM,
    // bias and GELU fused, with the bias gradient summed in the GELU's backward pass
    if (act !== 'relu' && d.constructor === Linear && d.bias && (d.weight.dtype === x.dtype || autocastDtype()))
      return linearGelu(x, d.weight, d.bias, act);
    return unary(act, d.forward(x));
  }
}

class BertLayer extends Module {
  attention: BertAttention;
  intermediate: Intermediate;
  output: AddNorm;
  constructor(c: BertConfig, init: InitOpts) {
    super();
    this.attention = new BertAttention(c, init);
    this.intermediate = new Intermediate(c, init);
    this.output = new AddNorm(c.intermediateSize, c, init);
  }
  forward(x: Tensor, mask: Tensor | null): Tensor {
    return tidy(() => {
      const a = this.attention.output.forward(this.attention.self.forward(x, mask), x);
      return this.output.forward(this.intermediate.forward(a), a);
    });
  }
}

class BertEncoder extends Module {
  layer: BertLayer[];
  constructor(c: BertConfig, init: InitOpts) {
    super();
    this.layer = Array.from({ length: c.numLayers }, () => new BertLayer(c, init));
  }
}

class Pooler extends Module {
  dense: Linear;
  constructor(c: BertConfig, init: InitOpts) {
    super();
    this.dense = new Linear(c.hiddenSize, c.hiddenSize, init);
  }
  forward(h: Tensor): Tensor {
    return unary('tanh', this.dense.forward(select(h, 1, 0)));
  }
}

export interface BertInput {
  inputIds: Tensor;
  attentionMask?: Tensor | null;
  tokenTypeIds?: Tensor | null;
  outputHiddenStates?: boolean;
}

export interface BertOutput {
  lastHiddenState: Tensor;
  poolerOutput: Tensor;
  hiddenStates: Tensor[];
}

export class BertModel extends Module {
  embeddings: BertEmbeddings;
  encoder: BertEncoder;
  pooler: Pooler;
  constructor(readonly config: BertConfig, init: InitOpts = {}) {
    super();
    this.embeddings = new BertEmbeddings(config, init);
    this.encoder = new BertEncoder(config, init);
    this.pooler = new Pooler(config, init);
  }

  forward(input: BertInput): BertOutput {
    const ids = input.inputIds;
    if (ids.ndim !== 2) throw new Error(`forward: inputIds must be [batch, seq], got ${shapeStr(ids.shape)}`);
    const [B, T] = ids.shape;
    return tidy(() => {
      const e = this.embeddings;
      const positions = expand(unsqueeze(arange(T, undefined, 1, { backend: ids.backendName }), 0), [B, T]);
      const types = input.tokenTypeIds ?? zeros([B, T], { dtype: 'int64', backend: ids.backendName });
      let h = e.LayerNorm.forward(add(add(e.word_embeddings.forward(ids), e.token_type_embeddings.forward(types)), e.position_embeddings.forward(positions)));
      const mask = input.attentionMask ? paddingMask(input.attentionMask) : null;
      const hiddenStates = input.outputHiddenStates ? [h] : [];
      for (const layer of this.encoder.layer) {
        h = layer.forward(h, mask);
        if (input.outputHiddenStates) hiddenStates.push(h);
      }
      return { lastHiddenState: h, poolerOutput: this.pooler.forward(h), hiddenStates };
    });
  }
}
