// Block-sparse self-attention for the decoder (DeepSpeed's sparse attention in a causal LM): every
// layer attends through one layout built once for `max_seq_len` tokens, so training, prefill and
// each decode step (its query row is the layout row of its position) see the same pattern. The
// config travels with the model as sparsity.json beside config.json.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readJson } from '../io/hf_folder.js';
import { scaledDotProductAttention } from '../ops/attention.js';
import { where } from '../ops/elementwise.js';
import { blockSparseAttention, blockSparseMask } from '../ops/sparse/block_sparse_attention.js';
import type { BlockLayout } from '../ops/sparse/block_layout.js';
import { type SparsityConfig, makeLayout, parseSparsityConfig } from '../ops/sparse/sparsity_config.js';
import type { Tensor } from '../tensor/tensor.js';

/** The file beside config.json that holds a model's sparsity config. */
export const SPARSITY_FILE = 'sparsity.json';
/** Layout length when neither the config nor max_position_embeddings (if smaller) says. */
const DEFAULT_MAX_SEQ = 16384;
const MASK_MIN = -3.4028234663852886e38;

export interface SparseAttendOptions {
  /** the decoder's additive padding/document mask, or null */
  mask: Tensor | null;
  scale: number;
  /** the layer's sliding window and soft-cap: block-sparse attention replaces both, so they must be 0 */
  window: number;
  softcap: number;
  staticCache: boolean;
}

export class SparseSelfAttention {
  private built: BlockLayout | null = null;
  private readonly rightPadded = new WeakMap<Tensor, boolean>();

  constructor(readonly config: SparsityConfig, readonly heads: number, readonly maxSeqLen: number) {}

  /** The [heads, nb, nb] layout for maxSeqLen tokens, built on first use. */
  get layout(): BlockLayout {
    this.built ??= makeLayout(this.config, this.heads, this.maxSeqLen);
    return this.built;
  }

  /**
   * Causal attention of q [B, H, Tq, hd] over the cache-extended k, v through the layout. A right
   * padding mask changes no real token's output under causal attention and is dropped; any other
   * mask (left padding, packed documents) runs dense attention with mask and layout combined.
   */
  attend(q: Tensor, k: Tensor, v: Tensor, o: SparseAttendOptions): Tensor {
    if (o.window > 0 || o.softcap > 0 || o.staticCache)
      throw new Error(`sparse attention: not combinable with ${o.window > 0 ? `a sliding window (${o.window})` : o.softcap > 0 ? 'attention soft-capping' : 'a static KV cache'}`);
    const Tk = k.shape[2];
    if (Tk > this.maxSeqLen) throw new Error(`sparse attention: ${Tk} tokens exceed the layout's max_seq_len ${this.maxSeqLen} (set max_seq_len in ${SPARSITY_FILE})`);
    if (!o.mask || this.ignorable(o.mask)) return blockSparseAttention(q, k, v, this.layout, { causal: true, scale: o.scale });
    const visible = blockSparseMask(this.layout, q.shape[2], Tk, false, q);
    return scaledDotProductAttention(q, k, v, { causal: true, scale: o.scale, mask: where(visible, o.mask, MASK_MIN) });
  }

  /** True for a key padding mask [B, 1, 1, Tk] whose masked keys all come after the visible ones. */
  private ignorable(mask: Tensor): boolean {
    const known = this.rightPadded.get(mask);
    if (known !== undefined) return known;
    let ok = mask.ndim === 4 && mask.shape[1] === 1 && mask.shape[2] === 1;
    if (ok) {
      const Tk = mask.shape[3];
      const m = mask.toFloat32Array();
      for (let r = 0; ok && r < mask.shape[0]; r++)
        for (let j = 1; j < Tk; j++) if (m[r * Tk + j] === 0 && m[r * Tk + j - 1] !== 0) ok = false;
    }
    this.rightPadded.set(mask, ok);
    return ok;
  }
}

/** What setAttentionSparsity needs of a decoder LM. */
interface SparseCapable {
  config: { numHeads: number; maxPositionEmbeddings: number };
  model: { layers: { self_attn: { sparse: SparseSelfAttention | null } }[] };
}

/**
 * Makes every decoder layer attend block-sparsely with `cfg` (null: dense again).
 * @example setAttentionSparsity(model, parseSparsityConfig({ mode: 'bslongformer', block: 64, attention: 'unidirectional' }))
 */
export function setAttentionSparsity(lm: SparseCapable, cfg: SparsityConfig | null): void {
  const maxSeq = cfg ? cfg.max_seq_len ?? Math.min(lm.config.maxPositionEmbeddings, DEFAULT_MAX_SEQ) : 0;
  const shared = cfg ? new SparseSelfAttention(cfg, lm.config.numHeads, maxSeq) : null;
  for (const layer of lm.model.layers) layer.self_attn.sparse = shared;
}

/** The model's sparsity config, or null when it attends densely. */
export const attentionSparsity = (lm: SparseCapable): SparsityConfig | null => lm.model.layers[0]?.self_attn.sparse?.config ?? null;

/** Writes dir/sparsity.json when the model attends sparsely. */
export function saveSparsity(dir: string, lm: SparseCapable): void {
  const cfg = attentionSparsity(lm);
  if (cfg) writeFileSync(join(dir, SPARSITY_FILE), JSON.stringify(cfg, null, 2) + '\n');
}

/**
 * Resuming from a training checkpoint: its sparsity.json is applied to a model that has none; a
 * model with another sparsity config is an error (the run would change its attention midway).
 */
export function resumeSparsity(dir: string, lm: SparseCapable): void {
  const file = join(dir, SPARSITY_FILE);
  if (!existsSync(file)) return;
  const saved = parseSparsityConfig(readJson(file), file);
  const own = attentionSparsity(lm);
  if (!own) return setAttentionSparsity(lm, saved);
  if (JSON.stringify(own) !== JSON.stringify(saved))
    throw new Error(`${file}: the checkpoint trained with sparse attention ${JSON.stringify(saved)}, the model now has ${JSON.stringify(own)}; resume with the same --attention-sparsity`);
}

/** Applies dir/sparsity.json to the model when the folder has one. */
export function loadSparsity(dir: string, lm: SparseCapable): void {
  const file = join(dir, SPARSITY_FILE);
  if (existsSync(file)) setAttentionSparsity(lm, parseSparsityConfig(readJson(file), file));
}
