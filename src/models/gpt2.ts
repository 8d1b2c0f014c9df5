// GPT-2 (HF modeling_gpt2.py): learned absolute positions, pre-LayerNorm blocks, fused c_attn,
// gelu_new MLP, tied LM head. Conv1D stores weights [in, out], so y = x W + b (no transpose).
import { scaledDotProductAttention } from '../ops/attention.js';
import { arange } from '../ops/creation.js';
import { add, to, unary } from '../ops/elementwise.js';
import { crossEntropy } from '../ops/loss.js';
import { linear, matmul } from '../ops/matmul.js';
import { contiguous, expand, narrow, reshape, transpose, unsqueeze } from '../ops/view.js';
import { shapeStr } from '../tensor/layout.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { type InitOpts, normal, zerosInit } from '../nn/init.js';
import { Embedding, LayerNorm } from '../nn/layers.js';
import { Module, Parameter } from '../nn/module.js';
import { CONFIG_LIMITS, ConfigReader, type Json, checkParameterCount } from './families/hf_config.js';
import { type CausalLMInput, type CausalLMOutput, headRows, paddingMask } from './causal_lm.js';
import { KVCache, attendInCacheDtype } from './kv_cache.js';

export interface Gpt2Config {
  modelType: 'gpt2';
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  innerSize: number;
  maxPositions: number;
  layerNormEps: number;
  eosTokenIds: number[];
  bosTokenId: number | null;
  padTokenId: number | null;
}

export function gpt2Config(raw: Json, file: string): Gpt2Config {
  const r = new ConfigReader(raw, file);
  const D = r.size('n_embd', CONFIG_LIMITS.hidden);
  const H = r.size('n_head', CONFIG_LIMITS.heads);
  if (D % H !== 0) throw r.error('n_embd', `(${D}) is not divisible by n_head (${H})`);
  const act = r.str('activation_function', 'gelu_new');
  if (act !== 'gelu_new') throw new Error(`${file}: activation_function '${act}' is not supported for gpt2 (gelu_new)`);
  const c: Gpt2Config = {
    modelType: 'gpt2', vocabSize: r.size('vocab_size', CONFIG_LIMITS.vocab), hiddenSize: D, numLayers: r.size('n_layer', CONFIG_LIMITS.layers),
    numHeads: H, numKvHeads: H, headDim: D / H, innerSize: r.has('n_inner') ? r.size('n_inner', CONFIG_LIMITS.intermediate) : 4 * D,
    maxPositions: r.size('n_positions', CONFIG_LIMITS.positions), layerNormEps: r.positive('layer_norm_epsilon', 1e-5),
    eosTokenIds: r.ids('eos_token_id'), bosTokenId: r.ids('bos_token_id')[0] ?? null, padTokenId: r.ids('pad_token_id')[0] ?? null,
  };
  // wte, wpe, per block c_attn (3 D^2), c_proj (D^2) and the MLP (2 D inner)
  const count = (c.vocabSize + c.maxPositions) * D + c.numLayers * (4 * D * D + 2 * D * c.innerSize);
  checkParameterCount(file, count, `n_layer ${c.numLayers}, n_embd ${D}, n_inner ${c.innerSize}, vocab_size ${c.vocabSize}, n_positions ${c.maxPositions}`);
  return c;
}

/** HF's Conv1D: weight [in, out]. */
export class Conv1D extends Module {
  weight: Tensor;
  bias: Tensor;
  constructor(nIn: number, nOut: number, init: InitOpts) {
    super();
    this.weight = Parameter(normal([nIn, nOut], 0.02, init));
    this.bias = Parameter(zerosInit([nOut], init));
  }
  forward(x: Tensor): Tensor {
    return add(matmul(x, this.weight), this.bias);
  }
}

class Gpt2Attention extends Module {
  c_attn: Conv1D;
  c_proj: Conv1D;
  constructor(readonly c: Gpt2Config, readonly layerIdx: number, init: InitOpts) {
    super();
    this.c_attn = new Conv1D(c.hiddenSize, 3 * c.hiddenSize, init);
    this.c_proj = new Conv1D(c.hiddenSize, c.hiddenSize, init);
  }
  forward(x: Tensor, mask: Tensor | null, cache: KVCache | null): Tensor {
    const { hiddenSize: D, numHeads: H, headDim: hd } = this.c;
    const [B, T] = x.shape;
    const qkv = this.c_attn.forward(x);
    const heads = (i: number): Tensor => transpose(reshape(narrow(qkv, 2, i * D, D), [B, T, H, hd]), 1, 2);
    let [q, k, v] = [heads(0), heads(1), heads(2)];
    if (cache) ({ k, v } = cache.update(this.layerIdx, k, v));
    const o = attendInCacheDtype(q, k, (q) => scaledDotProductAttention(q, k, v, { causal: true, mask }));
    return this.c_proj.forward(reshape(transpose(o, 1, 2), [B, T, D]));
  }
}

class Gpt2Mlp extends Module {
  c_fc: Conv1D;
  c_proj: Conv1D;
  constructor(c: Gpt2Config, init: InitOpts) {
    super();
    this.c_fc = new Conv1D(c.hiddenSize, c.innerSize, init);
    this.c_proj = new Conv1D(c.innerSize, c.hiddenSize, init);
  }
  forward(x: Tensor): Tensor {
    return this.c_proj.forward(unary('gelu_tanh', this.c_fc.forward(x)));
  }
}

class Gpt2Block extends Module {
  ln_1: LayerNorm;
  attn: Gpt2Attention;
  ln_2: LayerNorm;
  mlp: Gpt2Mlp;
  constructor(c: Gpt2Config, i: number, init: InitOpts) {
    super();
    this.ln_1 = new LayerNorm(c.hiddenSize, c.layerNormEps, init);
    this.attn = new Gpt2Attention(c, i, init);
    this.ln_2 = new LayerNorm(c.hiddenSize, c.layerNormEps, init);
    this.mlp = new Gpt2Mlp(c, init);
  }
  forward(x: Tensor, mask: Tensor | null, cache: KVCache | null): Tensor {
    return tidy(() => {
      const h = add(x, this.attn.forward(this.ln_1.forward(x), mask, cache));
      return add(h, this.mlp.forward(this.ln_2.forward(h)));
    });
  }
}

class Gpt2Model extends Module {
  wte: Embedding;
  wpe: Embedding;
  h: Gpt2Block[];
  ln_f: LayerNorm;
  constructor(c: Gpt2Config, init: InitOpts) {
    super();
    this.wte = new Embedding(c.vocabSize, c.hiddenSize, init);
    this.wpe = new Embedding(c.maxPositions, c.hiddenSize, init);
    this.h = Array.from({ length: c.numLayers }, (_, i) => new Gpt2Block(c, i, init));
    this.ln_f = new LayerNorm(c.hiddenSize, c.layerNormEps, init);
  }
}

export class Gpt2LMHeadModel extends Module {
  transformer: Gpt2Model;
  constructor(readonly config: Gpt2Config, init: InitOpts = {}) {
    super();
    this.transformer = new Gpt2Model(config, init);
  }

  forward(input: CausalLMInput): CausalLMOutput {
    const ids = input.inputIds;
    if (ids.ndim !== 2) throw new Error(`forward: inputIds must be [batch, seq], got ${shapeStr(ids.shape)}`);
    const [B, T] = ids.shape;
    const cache = input.cache ?? null;
    if (cache && !(cache instanceof KVCache)) throw new Error('forward: GPT-2 runs with the contiguous KVCache (generate), not a paged one');
    const past = cache?.length ?? 0;
    if (past + T > this.config.maxPositions) throw new Error(`forward: ${past + T} positions exceed n_positions ${this.config.maxPositions}`);
    return tidy(() => {
      const positions = input.positionIds ?? expand(unsqueeze(arange(past, past + T, 1, { backend: ids.backendName }), 0), [B, T]);
      const mask = input.attentionMask ? paddingMask(input.attentionMask) : null;
      let h = add(this.transformer.wte.forward(ids), this.transformer.wpe.forward(positions));
      const hiddenStates: Tensor[] = [];
      for (const block of this.transformer.h) {
        if (input.outputHiddenStates) hiddenStates.push(h);
        h = block.forward(h, mask, cache);
      }
      cache?.advance(T);
      h = this.transformer.ln_f.forward(h);
      if (input.outputHiddenStates) hiddenStates.push(h);
      const logits = to(linear(headRows(h, input), this.transformer.wte.weight), 'float32'); // tied head
      const loss = input.labels
        ? crossEntropy(contiguous(narrow(logits, 1, 0, T - 1)), contiguous(narrow(input.labels, 1, 1, T - 1)))
        : null;
      return { logits, loss, hiddenStates, routerLogits: [], auxLoss: null };
    });
  }
}
