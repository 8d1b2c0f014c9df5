// Token embeddings [B, T, D] -> one sentence embedding [B, D], as sentence-transformers'
// models/Pooling.py computes it: the first token (CLS), the mean over attended tokens, the
// position-weighted mean (SGPT, weights 1..T over the padded row) or the last attended token,
// which is found from the mask, so left- and right-padded batches give the same vectors.
import { tensor } from '../ops/creation.js';
import { clamp, div, mul } from '../ops/elementwise.js';
import { indexSelect } from '../ops/indexing.js';
import { sum } from '../ops/reduce.js';
import { reshape, select } from '../ops/view.js';
import { shapeStr } from '../tensor/layout.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';

export const POOLING_MODES = ['cls', 'mean', 'weightedmean', 'lasttoken'] as const;
export type PoolingMode = (typeof POOLING_MODES)[number];

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

/**
 * Pools hidden states [B, T, D] over an attention mask (B rows of T 0/1 entries) into [B, D].
 * @example const sentence = pool(out.lastHiddenState, batch.attentionMask, 'mean')
 */
export function pool(hidden: Tensor, mask: readonly (readonly number[])[], mode: PoolingMode, opts: PoolOptions = {}): Tensor {
  if (hidden.ndim !== 3 || mask.length !== hidden.shape[0] || mask.some((r) => r.length !== hidden.shape[1]))
    throw new Error(`pool: hidden states ${shapeStr(hidden.shape)} and an attention mask of ${mask.length} rows x ${mask[0]?.length ?? 0} do not match ([B, T, D] and [B, T])`);
  const [B, T, D] = hidden.shape;
  return tidy(() => {
    if (mode === 'cls') return select(hidden, 1, 0);
    if (mode === 'lasttoken') {
      const rows = lastTokenIndex(mask).map((t, b) => b * T + t);
      return indexSelect(reshape(hidden, [B * T, D]), 0, tensor(rows, { dtype: 'int64', backend: hidden.backendName }));
    }
    const w = tensor(tokenWeights(mask, T, mode === 'weightedmean', opts.promptLength ?? 0), { shape: [B, T, 1], dtype: hidden.dtype, backend: hidden.backendName });
    return div(sum(mul(hidden, w), 1), clamp(sum(w, 1), 1e-9));
  });
}
