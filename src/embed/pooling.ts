// Token embeddings [B, T, D] -> one sentence embedding [B, D], as sentence-transformers'
// models/Pooling.py computes it: the first token (CLS), the per-dimension max over attended
// tokens (padding set to -1e9), the mean over attended tokens, their sum over sqrt(count), the
// position-weighted mean (SGPT, weights 1..T over the padded row) or the last attended token,
// which is found from the mask, so left- and right-padded batches give the same vectors. Several
// modes give their vectors concatenated [B, modes x D] in Pooling.py's order.
import { tensor } from '../ops/creation.js';
import { clamp, compare, div, mul, unary, where } from '../ops/elementwise.js';
import { cat, indexSelect } from '../ops/indexing.js';
import { max, sum } from '../ops/reduce.js';
import { reshape, select } from '../ops/view.js';
import { shapeStr } from '../tensor/layout.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';

/** Every mode, in the order sentence-transformers concatenates them (Pooling.forward). */
export const POOLING_MODES = ['cls', 'max', 'mean', 'mean_sqrt_len_tokens', 'weightedmean', 'lasttoken'] as const;
export type PoolingMode = (typeof POOLING_MODES)[number];
/** One mode, or several whose vectors are concatenated (Pooling with more than one pooling_mode_* flag true). */
export type PoolingSpec = PoolingMode | readonly PoolingMode[];

/**
 * The modes of a spec in concatenation order, checked (an unknown or repeated mode is an error).
 * @example poolingModes(['mean', 'cls']) // ['cls', 'mean']
 */
export function poolingModes(spec: PoolingSpec): PoolingMode[] {
  const list: readonly string[] = typeof spec === 'string' ? [spec] : spec;
  const bad = list.filter((m) => !(POOLING_MODES as readonly string[]).includes(m));
  if (bad.length || !list.length || new Set(list).size !== list.length)
    throw new Error(`pooling must be one or more distinct modes of ${POOLING_MODES.join(', ')}, got [${list.join(', ')}]`);
  return POOLING_MODES.filter((m) => list.includes(m));
}

/** A --pooling value: one mode or a comma-separated list ("cls,max"). */
export function parsePooling(text: string): PoolingSpec {
  const modes = poolingModes(text.split(',').map((m) => m.trim()) as PoolingMode[]);
  return modes.length === 1 ? modes[0] : modes;
}

export interface PoolOptions {
  /** leading prompt tokens to leave out of the pooling (sentence-transformers' include_prompt: false); default 0 */
  promptLength?: number;
}

/** Each row's token weights: the mask (mean) or the mask times the 1-based position (weightedmean). */
function tokenWeights(mask: readonly (readonly number[])[], T: number, weighted: boolean, skip: number): Float64Array {
  const w = new Float64Array(mask.length * T);
  mask.forEach((row, b) => {
    for (let t = skip; t < T; t++) w[b * T + t] = row[t] ? (weighted ? t + 1 : 1) : 0;
  });
  return w;
}

/** The last attended position of each row (the mask's last 1), whichever side the padding is on. */
export function lastTokenIndex(mask: readonly (readonly number[])[]): number[] {
  return mask.map((row, b) => {
    const i = row.lastIndexOf(1);
    if (i < 0) throw new Error(`pool: row ${b} of the attention mask attends to no token`);
    return i;
  });
}

/** One mode's [B, D] vectors. */
function poolOne(hidden: Tensor, mask: readonly (readonly number[])[], mode: PoolingMode, skip: number): Tensor {
  const [B, T, D] = hidden.shape;
  const weights = (weighted: boolean): Tensor => tensor(tokenWeights(mask, T, weighted, skip), { shape: [B, T, 1], dtype: hidden.dtype, backend: hidden.backendName });
  switch (mode) {
    case 'cls': return select(hidden, 1, 0);
    case 'lasttoken': {
      const rows = lastTokenIndex(mask).map((t, b) => b * T + t);
      return indexSelect(reshape(hidden, [B * T, D]), 0, tensor(rows, { dtype: 'int64', backend: hidden.backendName }));
    }
    // padding (and a left-out prompt) becomes -1e9, as Pooling.py sets it, so it never wins the max
    case 'max': return max(where(compare('ne', weights(false), 0), hidden, -1e9), 1);
    case 'mean':
    case 'weightedmean': {
      const w = weights(mode === 'weightedmean');
      return div(sum(mul(hidden, w), 1), clamp(sum(w, 1), 1e-9));
    }
    case 'mean_sqrt_len_tokens': {
      const w = weights(false);
      return div(sum(mul(hidden, w), 1), unary('sqrt', clamp(sum(w, 1), 1e-9)));
    }
  }
}

/**
 * Pools hidden states [B, T, D] over an attention mask (B rows of T 0/1 entries) into [B, D], or
 * [B, n x D] for n modes concatenated.
 * @example const sentence = pool(out.lastHiddenState, batch.attentionMask, 'mean')
 */
export function pool(hidden: Tensor, mask: readonly (readonly number[])[], spec: PoolingSpec, opts: PoolOptions = {}): Tensor {
  if (hidden.ndim !== 3 || mask.length !== hidden.shape[0] || mask.some((r) => r.length !== hidden.shape[1]))
    throw new Error(`pool: hidden states ${shapeStr(hidden.shape)} and an attention mask of ${mask.length} rows x ${mask[0]?.length ?? 0} do not match ([B, T, D] and [B, T])`);
  const modes = poolingModes(spec);
  return tidy(() => {
    const parts = modes.map((m) => poolOne(hidden, mask, m, opts.promptLength ?? 0));
    return parts.length === 1 ? parts[0] : cat(parts, 1);
  });
}
