// Scaled dot-product attention. The public op is the tiled kernel (src/ops/fused/attention.ts);
// attentionComposite is the naive softmax(q kᵀ scale + mask) v it must equal.
import { shapeStr } from '../tensor/layout.js';
import { type Generator, defaultGenerator } from '../tensor/rng.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { arange, rand } from './creation.js';
import { add, compare, div, logicalOr, mul, sub, unary, where } from './elementwise.js';
import { attentionFused } from './fused/attention.js';
import { matmul } from './matmul.js';
import { softmaxComposite } from './softmax.js';
import { expand, reshape, transpose, unsqueeze } from './view.js';

export interface AttentionOptions {
  /** additive float mask or bool mask (true = attend), broadcastable to [B, H, Tq, Tk] */
  mask?: Tensor | null;
  /** query i attends keys j <= i + (Tk - Tq) */
  causal?: boolean;
  /** with causal: query i attends only the `window` most recent keys (Mistral's sliding window) */
  window?: number;
  /** scores become softcap * tanh(scores / softcap) before masking (Gemma 2) */
  softcap?: number;
  /** dropout on the attention weights (training only) */
  dropout?: number;
  /** default 1 / sqrt(hd) */
  scale?: number;
  generator?: Generator;
}

export interface ResolvedAttention {
  scale: number;
  causal: boolean;
  window: number;
  softcap: number;
  dropout: number;
  mask: Tensor | null;
}

export function checkAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): ResolvedAttention {
  const bad = (why: string): never => {
    throw new Error(`scaledDotProductAttention: ${why} (q ${shapeStr(q.shape)}, k ${shapeStr(k.shape)}, v ${shapeStr(v.shape)})`);
  };
  if (q.ndim !== 4 || k.ndim !== 4 || v.ndim !== 4) bad('q, k, v must be [B, H, T, hd]');
  const [B, H, , hd] = q.shape;
  const [Bk, Hkv, Tk, hdk] = k.shape;
  if (Bk !== B || v.shape[0] !== B) bad('batch sizes differ');
  if (hdk !== hd) bad('q and k head dims differ');
  if (v.shape[1] !== Hkv || v.shape[2] !== Tk) bad('k and v must agree in heads and length');
  if (H % Hkv !== 0) bad(`${H} query heads are not a multiple of ${Hkv} kv heads`);
  const dropout = opts.dropout ?? 0;
  if (!(dropout >= 0 && dropout < 1)) bad(`dropout must be in [0, 1), got ${dropout}`);
  const window = opts.window ?? 0;
  if (!Number.isInteger(window) || window < 0) bad(`window must be a non-negative integer, got ${window}`);
  const mask = opts.mask ?? null;
  if (mask && (mask.ndim > 4 || !isBroadcastable(mask.shape, [B, H, q.shape[2], Tk])))
    bad(`mask ${shapeStr(mask.shape)} does not broadcast to [${B}, ${H}, ${q.shape[2]}, ${Tk}]`);
  return { scale: opts.scale ?? 1 / Math.sqrt(hd), causal: opts.causal ?? false, window, softcap: opts.softcap ?? 0, dropout, mask };
}

function isBroadcastable(shape: readonly number[], to: number[]): boolean {
  const lead = to.length - shape.length;
  return shape.every((s, i) => s === 1 || s === to[i + lead]);
}

/**
 * softmax(q kᵀ scale + mask) v with GQA, causal / sliding-window masking, soft-capping and
 * dropout; O(T) extra memory in forward and backward.
 * @example k.scaledDotProductAttention(q, k, v, { causal: true })
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const r = checkAttention(q, k, v, opts);
  return attentionFused(q, k, v, r, opts.generator ?? defaultGenerator);
}

/** The definition: materialises the [B, H, Tq, Tk] scores. Same dropout draws as the fused op. */
export function attentionComposite(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const r = checkAttention(q, k, v, opts);
  const [B, H, Tq] = q.shape;
  const [, Hkv, Tk] = k.shape;
  const rep = H / Hkv;
  return tidy(() => {
    const repeat = (t: Tensor): Tensor =>
      reshape(expand(unsqueeze(t, 2), [B, Hkv, rep, Tk, t.shape[3]]), [B, H, Tk, t.shape[3]]);
    const [kr, vr] = [repeat(k), repeat(v)];
    let s = mul(matmul(q, transpose(kr)), r.scale);
    if (r.softcap > 0) s = mul(unary('tanh', div(s, r.softcap)), r.softcap);
    if (r.mask) s = add(s, r.mask.dtype === 'bool' ? where(r.mask, 0, -Infinity) : r.mask);
    if (r.causal || r.window > 0) {
      const i = reshape(arange(Tq, undefined, 1, { backend: q.backendName }), [Tq, 1]);
      const j = arange(Tk, undefined, 1, { backend: q.backendName });
      const rel = sub(j, add(i, Tk - Tq)); // j - i'
      const future = compare('gt', rel, r.causal ? 0 : Infinity);
      const masked = r.window > 0 ? logicalOr(future, compare('le', rel, -r.window)) : future;
      s = where(masked, -Infinity, s);
    }
    let p = softmaxComposite(s, -1);
    if (r.dropout > 0) {
      const gen = opts.generator ?? defaultGenerator;
      const u = rand([B, H, Tq, Tk], { backend: q.backendName, generator: gen });
      p = where(compare('ge', u, r.dropout), div(p, 1 - r.dropout), 0);
    }
    return matmul(p, vr);
  });
}

/**
 * Zeroes each element with probability p and scales the rest by 1/(1-p) (inverted dropout).
 * @example h = k.dropout(h, 0.1, model.training)
 */
export function dropout(x: Tensor, p: number, training = true, generator: Generator = defaultGenerator): Tensor {
  if (!(p >= 0 && p < 1)) throw new Error(`dropout: p must be in [0, 1), got ${p}`);
  if (!training || p === 0) return x;
  return tidy(() => {
    const u = rand(x.shape, { backend: x.backendName, generator, dtype: 'float32' });
    return where(compare('ge', u, p), mul(x, 1 / (1 - p)), 0);
  });
}

