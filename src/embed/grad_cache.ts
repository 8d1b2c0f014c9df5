// GradCache (Gao et al. 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited
// Setup"; sentence-transformers' CachedMultipleNegativesRankingLoss): the loss over a batch whose
// in-batch negatives need every embedding at once, with activations for only `chunk` texts alive.
//   1. embed every column in chunks without autograd -> E (detached leaves)
//   2. loss(E) and its backward -> dL/dE (and the gradients of parameters the loss owns, e.g. a scale)
//   3. re-embed each chunk with autograd and backpropagate sum(e * dL/de) into the model
// Step 3's parameter gradient is sum_chunks (de/dθ)ᵀ dL/de = dL/dθ of the full batch (chain rule),
// given that the re-forward reproduces step 1 (no dropout, or the same RNG state).
import { cat } from '../ops/indexing.js';
import { mul } from '../ops/elementwise.js';
import { sum } from '../ops/reduce.js';
import { item } from '../ops/transfer.js';
import { narrow } from '../ops/view.js';
import { noGrad } from '../tensor/grad_mode.js';
import { withWeightCache } from '../ops/fused/weight_cache.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';

/** Embeds texts of column `column` ([n, D], recorded by autograd when gradients are on). */
export type ColumnEmbedder = (texts: string[], column: number) => Tensor;

/** Splits a list into runs of at most `size`. */
function chunks<T>(xs: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < xs.length; i += size) out.push(xs.slice(i, i + size));
  return out;
}

/**
 * Forward and backward of loss(embeddings of every column) with autograd held for `chunk` texts at
 * a time; returns the loss. beforeBackward sees the loss before any gradient exists (a throw stops the step). Gradients add into .grad exactly as the full-batch backward would.
 * @example const loss = gradCacheBackward([anchors, positives], (t, c) => model.embed(t), (e) => mnrlLoss(e[0], e[1]), 8)
 */
export function gradCacheBackward(columns: readonly string[][], embed: ColumnEmbedder, loss: (e: Tensor[]) => Tensor, chunk: number, beforeBackward?: (loss: number) => void): number {
  if (!Number.isInteger(chunk) || chunk < 1) throw new Error(`gradCacheBackward: chunk must be a positive integer, got ${chunk}`);
  // 1: every embedding, no graph (under autocast each weight is rounded once for all the chunks: withWeightCache)
  const cached = noGrad(() => withWeightCache(() => columns.map((texts, c) => tidy(() => cat(chunks(texts, chunk).map((t) => embed(t, c)), 0)))));
  for (const e of cached) e.requiresGrad = true;
  try {
    // 2: the loss over the whole batch; its backward stops at the cached leaves
    const value = tidy(() => {
      const l = loss(cached);
      beforeBackward?.(item(l));
      l.backward();
      return item(l);
    });
    // 3: each chunk again with its graph, weighted by its slice of dL/dE
    columns.forEach((texts, c) => {
      const g = cached[c].grad;
      if (!g) return; // a column the loss did not use
      let start = 0;
      for (const t of chunks(texts, chunk)) {
        tidy(() => sum(mul(embed(t, c), narrow(g, 0, start, t.length))).backward());
        start += t.length;
      }
    });
    return value;
  } finally {
    for (const e of cached) e.dispose();
  }
}

/** Embeds every column of a batch at once ([n_c, D] each; embedColumns merges them into one forward where it can). */
export type ColumnsEmbedder = (columns: readonly string[][]) => Tensor[];

/**
 * The same loss and gradients with every column embedded with autograd at once (the reference GradCache equals);
 * embedAll, when given, embeds them instead of embed column by column.
 */
export function fullBatchBackward(
  columns: readonly string[][], embed: ColumnEmbedder, loss: (e: Tensor[]) => Tensor, beforeBackward?: (loss: number) => void, embedAll?: ColumnsEmbedder,
): number {
  return tidy(() => {
    const l = loss(embedAll ? embedAll(columns) : columns.map((t, c) => embed(t, c)));
    beforeBackward?.(item(l));
    l.backward();
    return item(l);
  });
}
