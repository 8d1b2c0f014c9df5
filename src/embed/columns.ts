// The columns of a training batch (anchors, positives, hard negatives) embedded in one forward when
// every column pads to the same length with the same prompt length: the merged batch holds exactly
// the rows the per-column batches would (same ids, same padding, same mask), and every op of the
// encoder is row-wise, so the embeddings equal the per-column forwards' up to the GEMMs' summation
// blocking. One forward instead of one per column runs each layer's ops once, on twice the rows
// (fewer, larger GEMMs), and under autocast rounds each weight once instead of once per column,
// holding one bf16 copy of it for backward. Columns of different lengths are embedded one by one,
// as sentence-transformers does: padding a short column to a long one's length would cost more
// than the merge saves.
import { narrow } from '../ops/view.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import type { SentenceEmbedder, TextBatch } from './model.js';

/**
 * Each column's embeddings [n_c, dim] (recorded by autograd when gradients are on); `prompts[c]` is put
 * before column c's texts; onBatch sees each batch forwarded (to count its tokens).
 * @example const [a, p] = embedColumns(model, [anchors, positives], ['query: ', 'passage: '])
 */
export function embedColumns(model: SentenceEmbedder, columns: readonly string[][], prompts: readonly string[] = [], onBatch?: (b: TextBatch) => void): Tensor[] {
  const forward = (b: TextBatch): Tensor => (onBatch?.(b), model.forward(b));
  const toks = columns.map((texts, c) => model.tokenRows(texts, prompts[c] ?? ''));
  const longest = toks.map((t) => Math.max(...t.rows.map((r) => r.length)));
  const same = toks.every((t, c) => longest[c] === longest[0] && t.promptLength === toks[0].promptLength);
  if (!same || columns.length < 2) return toks.map((t) => forward(model.pad(t.rows, t.promptLength)));
  return tidy(() => {
    const e = forward(model.pad(toks.flatMap((t) => t.rows), toks[0].promptLength));
    let start = 0;
    return columns.map((texts) => narrow(e, 0, (start += texts.length) - texts.length, texts.length));
  });
}
