// The Llama-family decoder (HF modeling_llama.py and its relatives, transformers 4.44): one
// implementation driven by DecoderConfig flags (qkv bias, GQA, sliding windows, soft-capping,
// Gemma's norms and embedding scale, fused Phi-3 projections, Mixtral's sparse MoE).
// Property names are HF's, so the state dict keys are the checkpoint keys.
import { scaledDotProductAttention } from '../ops/attention.js';
import { add, compare, div, mul, unary, where } from '../ops/elementwise.js';
import { arange, tensor } from '../ops/creation.js';
import { rotaryTables } from '../ops/rope.js';
import { linear } from '../ops/matmul.js';
import { rope } from '../ops/rope.js';
import { rmsNormQkvRope } from '../ops/fused/rms_norm_qkv_rope.js';
import { linearResidual } from '../ops/fused/linear_residual.js';
import { mergedDecodeParts } from '../quant/merge_projections.js';
import { expand, narrow, reshape, transpose, unsqueeze } from '../ops/view.js';
import type { Tensor } from '../tensor/tensor.js';
import { keep, tidy } from '../tensor/scope.js';
import { isGradEnabled } from '../tensor/grad_mode.js';
import { shapeStr } from '../tensor/layout.js';
import { checkpoint } from '../autograd/checkpoint.js';
import { Embedding, Linear, RMSNorm } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import type { InitOpts } from '../nn/init.js';
import type { DecoderConfig } from './config.js';
import { KVCache, attendInCacheDtype } from './kv_cache.js';
import { PagedKVCache } from './paged_kv_cache.js';
import { SparseMoe } from './moe.js';
import { Mlp } from './mlp.js';

export { Mlp };
import { sharedInputProjections } from '../lora/shared_input.js';
import { rotaryFrequencies } from './rope_scaling.js';
import type { SparseSelfAttention } from './sparse_attention.js';

/** float32's most negative finite value: HF's additive mask entry (not -inf). */
export const MASK_MIN = -3.4028234663852886e38;

/** Activation checkpointing: none, every block recomputed (full), or attention/MLP insides only (selective). */
export type Checkpointing = 'none' | 'full' | 'selective';

/** [B, Tk] attention mask (1 attend, 0 pad) -> additive [B, 1, 1, Tk] mask (0 or MASK_MIN), as HF builds it. */
export function paddingMask(am: Tensor): Tensor {
  return reshape(where(compare('eq', am, 0), MASK_MIN, 0), [am.shape[0], 1, 1, am.shape[1]]);
}

/** Combines two additive masks so that a position masked by either stays at MASK_MIN (never -inf). */
function eitherMask(a: Tensor, b: Tensor): Tensor {
  return where(compare('lt', add(a, b), 0), MASK_MIN, 0);
}

/** What the decoder stack reads (a subset of CausalLMInput: the heads add labels and logits options). */
export interface DecoderInput {
  /** int64 [B, T] */
  inputIds: Tensor;
  /** [B, past + T], 1 = attend, 0 = padding */
  attentionMask?: Tensor | null;
  /** int64 [B, T]: packed rows' document of each token; attention stays inside a document */
  documentIds?: Tensor | null;
  /** int64 [B, T]; default past .. past + T - 1 */
  positionIds?: Tensor | null;
  /** a paged cache runs the tokens of many sequences as one row (its step layout) and needs positionIds */
  cache?: KVCache | PagedKVCache | null;
  outputHiddenStates?: boolean;
}

export interface DecoderOutput {
  /** the final-norm hidden state [B, T, D] */
  hidden: Tensor;
  hiddenStates: Tensor[];
  routerLogits: Tensor[];
}

/** What every layer needs for one forward call. */
export interface LayerContext {
  cos: Tensor;
  sin: Tensor;
  /** additive padding mask [B, 1, 1, Tk] (0 or float32 min), or null */
  mask: Tensor | null;
  cache: KVCache | PagedKVCache | null;
}

/**
 * checkpoint(fn, x) with the context's tensors passed as inputs too, so the recomputation in
 * backward still holds them after the forward's scope has freed its own handles.
 */
export function checkpointWithContext(fn: (x: Tensor, ctx: LayerContext) => Tensor, x: Tensor, ctx: LayerContext): Tensor {
  const extra = ctx.mask ? [ctx.cos, ctx.sin, ctx.mask] : [ctx.cos, ctx.sin];
  return checkpoint((y, cos, sin, mask) => fn(y, { ...ctx, cos, sin, mask: mask ?? null }), x, ...extra);
}

export class Attention extends Module {
  q_proj?: Linear;
  k_proj?: Linear;
  v_proj?: Linear;
  qkv_proj?: Linear;
  o_proj: Linear;
  q_norm?: RMSNorm;
  k_norm?: RMSNorm;
  /** block-sparse attention (setAttentionSparsity in sparse_attention.ts); null = dense */
  sparse: SparseSelfAttention | null = null;

  constructor(readonly c: DecoderConfig, readonly layerIdx: number, init: InitOpts) {
    super();
    const { hiddenSize: D, numHeads: H, numKvHeads: Hkv, headDim: hd } = c;
    if (c.fusedQkv) this.qkv_proj = new Linear(D, (H + 2 * Hkv) * hd, { ...init, bias: c.qkvBias });
    else {
      this.q_proj = new Linear(D, H * hd, { ...init, bias: c.qkvBias });
      this.k_proj = new Linear(D, Hkv * hd, { ...init, bias: c.qkvBias });
      this.v_proj = new Linear(D, Hkv * hd, { ...init, bias: c.qkvBias });
    }
    this.o_proj = new Linear(H * hd, D, { ...init, bias: c.oBias });
    if (c.qkNorm) {
      this.q_norm = new RMSNorm(hd, c.rmsNormEps, c.normOffset, init);
      this.k_norm = new RMSNorm(hd, c.rmsNormEps, c.normOffset, init);
    }
  }

  /** x [B, T, D] -> q [B, H, T, hd], k/v [B, Hkv, T, hd] */
  private project(x: Tensor): [Tensor, Tensor, Tensor] {
    const { numHeads: H, numKvHeads: Hkv, headDim: hd } = this.c;
    const [B, T] = x.shape;
    const heads = (t: Tensor, n: number): Tensor => transpose(reshape(t, [B, T, n, hd]), 1, 2);
    if (this.qkv_proj) {
      const qkv = this.qkv_proj.forward(x); // rows: q (H hd), k (Hkv hd), v (Hkv hd)
      return [heads(narrow(qkv, 2, 0, H * hd), H), heads(narrow(qkv, 2, H * hd, Hkv * hd), Hkv), heads(narrow(qkv, 2, (H + Hkv) * hd, Hkv * hd), Hkv)];
    }
    const [q, k, v] = sharedInputProjections(x, [this.q_proj!, this.k_proj!, this.v_proj!]); // LoRA layers fused in one pass
    return [heads(q, H), heads(k, Hkv), heads(v, Hkv)];
  }

  /**
   * Decoding (no gradients): q, k, v with RoPE from the layer's input before its norm, in one fused
   * call (RMSNorm + merged Q|K|V + bias + RoPE); null where the layer has q/k norms or projections
   * the op cannot take (LoRA wrappers, mixed formats), or KESTREL_DECODE_FUSION=off.
   */
  fusedInput(x: Tensor, norm: RMSNorm, ctx: LayerContext): [Tensor, Tensor, Tensor] | null {
    if (this.q_norm || process.env.KESTREL_DECODE_FUSION === 'off') return null;
    const parts = mergedDecodeParts(this, 'qkv', this.qkv_proj ? [this.qkv_proj] : [this.q_proj!, this.k_proj!, this.v_proj!]);
    if (!parts) return null;
    const heads = { numHeads: this.c.numHeads, numKvHeads: this.c.numKvHeads, headDim: this.c.headDim, interleaved: false };
    const { q, k, v } = rmsNormQkvRope(x, { weight: norm.weight, eps: norm.eps, offset: norm.offset }, parts, ctx.cos, ctx.sin, heads);
    return [q, k, v];
  }

  /**
   * x [B, T, D] (normalized) -> the attention's output [B, T, D]; `qkv`: fusedInput's q, k, v instead
   * of projecting x; `residual` (decoding): returned plus the output, summed by the o_proj kernel
   */
  forward(x: Tensor, ctx: LayerContext, qkv?: [Tensor, Tensor, Tensor], residual?: Tensor): Tensor {
    const c = this.c;
    const [B, T] = x.shape;
    let [q, k, v] = qkv ?? this.project(x);
    if (!qkv) {
      if (this.q_norm && this.k_norm) [q, k] = [this.q_norm.forward(q), this.k_norm.forward(k)];
      q = rope(q, ctx.cos, ctx.sin);
      k = rope(k, ctx.cos, ctx.sin);
    }
    const window = c.slidingWindows[this.layerIdx];
    const merge = (o: Tensor): Tensor => {
      const flat = reshape(transpose(o, 1, 2), [B, T, c.numHeads * c.headDim]);
      if (!residual) return this.o_proj.forward(flat);
      const parts = mergedDecodeParts(this, 'o', [this.o_proj]);
      return parts ? linearResidual(flat, parts, residual) : add(residual, this.o_proj.forward(flat));
    };
    if (ctx.cache instanceof PagedKVCache) {
      // the paged kernels attend densely: a block-sparse model would silently change what it computes
      if (this.sparse) throw new Error('a model with block-sparse attention (sparsity.json) cannot run on the paged KV cache; serve it with --engine serial');
      return merge(ctx.cache.attend(this.layerIdx, q, k, v, { window, softcap: c.attnSoftcap, scale: c.attentionScale }));
    }
    // a static cache (CUDA-graph decoding) returns its whole buffer and the mask of what is visible
    let cacheMask: Tensor | undefined;
    if (ctx.cache) ({ k, v, mask: cacheMask } = ctx.cache.update(this.layerIdx, k, v, window));
    if (cacheMask && ctx.mask) throw new Error('attention: a static KV cache decodes without a padding mask (batch 1, no pads)');
    const o = attendInCacheDtype(q, k, (q) => this.sparse
      ? this.sparse.attend(q, k, v, { mask: ctx.mask, scale: c.attentionScale, window, softcap: c.attnSoftcap, staticCache: !!cacheMask })
      : scaledDotProductAttention(q, k, v, {
        causal: !cacheMask,
        mask: cacheMask ?? ctx.mask,
        window: cacheMask ? 0 : window,
        softcap: c.attnSoftcap,
        scale: c.attentionScale,
      })); // [B, H, T, hd]
    return merge(o);
  }
}

export class DecoderLayer extends Module {
  self_attn: Attention;
  /** the dense MLP, or Qwen2-MoE's sparse block (its HF name is `mlp` too) */
  mlp?: Mlp | SparseMoe;
  /** Mixtral's sparse block */
  block_sparse_moe?: SparseMoe;
  input_layernorm: RMSNorm;
  post_attention_layernorm: RMSNorm;
  pre_feedforward_layernorm?: RMSNorm;
  post_feedforward_layernorm?: RMSNorm;

  constructor(readonly c: DecoderConfig, layerIdx: number, init: InitOpts) {
    super();
    const norm = (): RMSNorm => new RMSNorm(c.hiddenSize, c.rmsNormEps, c.normOffset, init);
    this.self_attn = new Attention(c, layerIdx, init);
    if (!c.moe || c.moe.denseLayers.includes(layerIdx)) this.mlp = new Mlp(c, init);
    else if (c.moe.naming === 'mixtral') this.block_sparse_moe = new SparseMoe(c, init);
    else this.mlp = new SparseMoe(c, init);
    this.input_layernorm = norm();
    this.post_attention_layernorm = norm();
    if (c.sandwichNorms) {
      this.pre_feedforward_layernorm = norm();
      this.post_feedforward_layernorm = norm();
    }
  }

  /** The layer's mixture-of-experts block, or null for a dense MLP. */
  sparseBlock(): SparseMoe | null {
    if (this.block_sparse_moe) return this.block_sparse_moe;
    return this.mlp instanceof SparseMoe ? this.mlp : null;
  }

  /** Returns the new hidden state and, for MoE layers, the router logits [B*T, E]. */
  /**
   * `selective` recomputes the attention and MLP insides in backward (checkpoint()), keeping the
   * norms and residual sums; training only (never with a KV cache).
   */
  forward(x: Tensor, ctx: LayerContext, recompute: 'none' | 'selective' = 'none'): { hidden: Tensor; routerLogits: Tensor | null } {
    const sel = recompute === 'selective' && !ctx.cache;
    // The decode-only fused ops run when generating (a KV cache, no grad). A no-grad forward without a
    // cache is a training pass too (a checkpointed layer's first forward, a ZeRO-3 unit's forward):
    // its backward recomputes with the separate ops, and training row counts must not grow the fused
    // kernels' scratch or merge a partitioned base's projections.
    const decoding = !sel && !!ctx.cache && !isGradEnabled();
    return tidy(() => {
      const fused = decoding ? this.self_attn.fusedInput(x, this.input_layernorm, ctx) : null;
      // decoding a pre-norm layer: o_proj's kernel adds the residual x itself (Gemma 2 normalizes attn first)
      const sandwich = !!this.pre_feedforward_layernorm;
      const attn = fused ? this.self_attn.forward(x, ctx, fused, sandwich ? undefined : x)
        : sel ? checkpointWithContext((y, c) => this.self_attn.forward(y, c), this.input_layernorm.forward(x), ctx)
        : this.self_attn.forward(this.input_layernorm.forward(x), ctx);
      // Gemma 2: x + norm(attn(norm(x))); h + norm(mlp(norm(h)))
      const h = sandwich ? add(x, this.post_attention_layernorm.forward(attn)) : fused ? attn : add(x, attn);
      const ffNorm = this.pre_feedforward_layernorm ?? this.post_attention_layernorm;
      let ff: Tensor;
      let routerLogits: Tensor | null = null;
      const sparse = this.sparseBlock();
      const mlp = this.mlp as Mlp;
      // decoding: the norm, gate|up and activation in one fused call (Mlp.fusedForward) where it can
      const ffResidual = this.post_feedforward_layernorm ? undefined : h; // down_proj's kernel adds h
      const fusedFf = sparse || !decoding ? null : mlp.fusedForward(h, ffNorm, ffResidual);
      if (fusedFf && ffResidual) return { hidden: fusedFf, routerLogits };
      if (fusedFf) ff = fusedFf;
      else if (sparse) ({ out: ff, routerLogits } = sparse.forward(ffNorm.forward(h)));
      else ff = sel ? checkpoint((y) => mlp.forward(y), ffNorm.forward(h)) : mlp.forward(ffNorm.forward(h));
      if (this.post_feedforward_layernorm) ff = this.post_feedforward_layernorm.forward(ff);
      return { hidden: add(h, ff), routerLogits };
    });
  }
}

export class DecoderModel extends Module {
  embed_tokens: Embedding;
  layers: DecoderLayer[];
  norm: RMSNorm;
  /**
   * Under 'full' checkpointing, how many layers (the first ones) recompute in backward; the others keep
   * their activations (Megatron's recompute_num_layers, block method). null: every layer. A dial
   * between memory and time: each recomputed layer trades its saved activations for one more forward.
   */
  checkpointLayers: number | null = null;

  constructor(readonly c: DecoderConfig, init: InitOpts) {
    super();
    this.embed_tokens = new Embedding(c.vocabSize, c.hiddenSize, { ...init, paddingIdx: c.padTokenId });
    this.layers = Array.from({ length: c.numLayers }, (_, i) => new DecoderLayer(c, i, init));
    this.norm = new RMSNorm(c.hiddenSize, c.rmsNormEps, c.normOffset, init);
  }

  /** Embeddings, scaled by sqrt(hidden) for Gemma (the constant rounded to the activation dtype, as HF does). */
  embed(ids: Tensor): Tensor {
    const e = this.embed_tokens.forward(ids);
    if (!this.c.scaleEmbeddings) return e;
    return mul(e, Math.sqrt(this.c.hiddenSize)); // the scalar takes e's dtype, as HF's normalizer does
  }

  /** The inverse frequencies on the positions' device, uploaded once per distinct table. */
  private invFreqCache: { key: string; t: Tensor } | null = null;

  /** Frees the cached inverse frequencies (the heads' dispose() calls this). */
  releaseRotaryCache(): void {
    this.invFreqCache?.t.dispose();
    this.invFreqCache = null;
  }

  /** cos/sin tables [B, T, hd/2] for the given positions. */
  private rotary(positions: Tensor, seqLen: number): { cos: Tensor; sin: Tensor } {
    const c = this.c;
    const { invFreq, attentionFactor } = rotaryFrequencies(c, seqLen);
    const key = `${positions.backendName}:${invFreq.join(',')}`;
    if (this.invFreqCache?.key !== key) {
      this.invFreqCache?.t.dispose();
      this.invFreqCache = { key, t: keep(tensor(invFreq, { backend: positions.backendName })) };
    }
    const { cos, sin } = rotaryTables(positions, Math.floor(c.headDim * c.partialRotaryFactor), c.ropeTheta, this.invFreqCache.t);
    return attentionFactor === 1 ? { cos, sin } : { cos: mul(cos, attentionFactor), sin: mul(sin, attentionFactor) };
  }

  /** The additive attention mask of padding and packed documents, or null (causality is the kernel's). */
  private attentionMaskOf(input: DecoderInput, B: number, T: number, past: number): Tensor | null {
    let mask: Tensor | null = null;
    if (input.attentionMask) {
      const am = input.attentionMask;
      if (am.ndim !== 2 || am.shape[0] !== B || am.shape[1] !== past + T)
        throw new Error(`forward: attentionMask must be [${B}, ${past + T}] (batch, cached + new tokens), got ${shapeStr(am.shape)}`);
      mask = paddingMask(am);
    }
    if (input.documentIds) {
      const d = input.documentIds;
      if (input.cache || d.ndim !== 2 || d.shape[0] !== B || d.shape[1] !== T)
        throw new Error(`forward: documentIds must be [${B}, ${T}] and cannot be combined with a KV cache, got ${shapeStr(d.shape)}`);
      const across = where(compare('ne', unsqueeze(d, 2), unsqueeze(d, 1)), MASK_MIN, 0); // [B, T, T]
      const docMask = unsqueeze(across, 1); // [B, 1, T, T]
      mask = mask ? eitherMask(mask, docMask) : docMask;
    }
    return mask;
  }

  /**
   * Embeddings -> layers -> final norm (HF's LlamaModel.forward); every head (causal LM,
   * sequence classification) runs this and reads what it needs from the hidden state.
   * Call inside a tidy scope (the heads do).
   */
  forward(input: DecoderInput, checkpointing: Checkpointing = 'none'): DecoderOutput {
    const ids = input.inputIds;
    if (ids.ndim !== 2) throw new Error(`forward: inputIds must be [batch, seq], got ${shapeStr(ids.shape)}`);
    const [B, T] = ids.shape;
    if (input.cache instanceof PagedKVCache && (!input.positionIds || input.attentionMask || B !== 1))
      throw new Error('forward: a paged KV cache takes the step\'s tokens as one row [1, N] with positionIds and no attentionMask');
    const past = input.cache instanceof KVCache ? input.cache.length : 0;
    const positions = input.positionIds ?? expand(unsqueeze(arange(past, past + T, 1, { backend: ids.backendName }), 0), [B, T]);
    const { cos, sin } = this.rotary(positions, past + T);
    const ctx: LayerContext = { cos, sin, mask: this.attentionMaskOf(input, B, T, past), cache: input.cache ?? null };
    let h = this.embed(ids);
    const hiddenStates: Tensor[] = [];
    const routerLogits: Tensor[] = [];
    const recomputed = this.checkpointLayers ?? this.layers.length;
    if (!(Number.isInteger(recomputed) && recomputed >= 0))
      throw new Error(`forward: checkpointLayers must be a whole number >= 0 (or null for every layer), got ${this.checkpointLayers}`);
    for (const [i, layer] of this.layers.entries()) {
      if (input.outputHiddenStates) hiddenStates.push(h);
      if (checkpointing === 'full' && i < recomputed && !ctx.cache && isGradEnabled()) {
        h = checkpointWithContext((x, c) => layer.forward(x, c).hidden, h, ctx);
        continue;
      }
      const out = layer.forward(h, ctx, checkpointing === 'selective' ? 'selective' : 'none');
      h = out.hidden;
      if (out.routerLogits) routerLogits.push(out.routerLogits);
    }
    if (input.cache instanceof KVCache) input.cache.advance(T);
    h = this.norm.forward(h);
    if (input.outputHiddenStates) hiddenStates.push(h);
    return { hidden: h, hiddenStates, routerLogits };
  }
}

/** lm_head as a Linear, or the embedding matrix when tied. */
export function lmHead(model: DecoderModel, head: Linear | undefined, h: Tensor, softcap: number): Tensor {
  let logits = head ? head.forward(h) : linear(h, model.embed_tokens.weight);
  if (softcap > 0) logits = mul(unary('tanh', div(logits, softcap)), softcap);
  return logits;
}
