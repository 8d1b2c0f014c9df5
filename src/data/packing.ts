// Packing and padding. Packing concatenates documents (each already ending in eos) and cuts the
// stream into seqLen rows; positionIds restart at 0 at each document start (and at a row start)
// and documentIds number the documents of a row, so the trainer can build a block-diagonal causal
// mask and no token attends across a document boundary. Padding right-pads single examples (SFT).
// Reference: HF DataCollatorWithFlattening (position_ids per example, -100 at each example start).
import { type Example, IGNORE_INDEX } from './example.js';
import { DocView, TokenStoreBuilder } from './token_store.js';

/** One row of a batch. attentionMask is 1 on tokens and 0 on padding. */
export interface Row {
  readonly inputIds: number[];
  readonly labels: number[];
  readonly attentionMask: number[];
  /** packed rows: the position of each token in its document (restarts at 0) */
  readonly positionIds?: number[];
  /** packed rows: 0, 1, ... per document of the row; -1 on padding */
  readonly documentIds?: number[];
}

/** Plain arrays [batch][time]; the trainer makes tensors. */
export interface Batch {
  readonly inputIds: number[][];
  readonly labels: number[][];
  readonly attentionMask: number[][];
  readonly positionIds?: number[][];
  readonly documentIds?: number[][];
}

/** Rows a packed view fills: the last one is padded rather than dropped, so every token is seen. */
export function packedRowCount(view: DocView, seqLen: number): number {
  return Math.ceil(view.tokens / seqLen);
}

/**
 * Row r of the view's documents packed into seqLen blocks.
 * Labels are -100 at each document's first token: the token before it (the previous document's
 * eos) cannot see across the boundary, so predicting it would only teach noise.
 * @example
 * packedRow(view, 8, 0, 0) // { inputIds: [..8], positionIds: [0,1,2,0,1,2,3,4], documentIds: [0,0,0,1,1,1,1,1], ... }
 */
export function packedRow(view: DocView, seqLen: number, r: number, padId: number): Row {
  const start = r * seqLen, end = Math.min(start + seqLen, view.tokens);
  if (!(start < end)) throw new RangeError(`packedRow: row ${r} is out of range (${packedRowCount(view, seqLen)} rows)`);
  const inputIds: number[] = [], labels: number[] = [], positionIds: number[] = [], documentIds: number[] = [];
  let j = view.docAt(start), doc = 0;
  for (let pos = start; pos < end; j++) {
    const from = pos - view.cum[j], to = Math.min(view.cum[j + 1], end) - view.cum[j];
    if (to <= from) continue; // an empty document
    const part = view.doc(j, from, to);
    if (from === 0) part.labels[0] = IGNORE_INDEX;
    for (let t = 0; t < part.inputIds.length; t++) {
      inputIds.push(part.inputIds[t]);
      labels.push(part.labels[t]);
      positionIds.push(t);
      documentIds.push(doc);
    }
    pos += to - from;
    doc++;
  }
  const n = inputIds.length;
  const attentionMask = new Array<number>(seqLen).fill(1, 0, n).fill(0, n);
  for (let t = n; t < seqLen; t++) {
    inputIds.push(padId);
    labels.push(IGNORE_INDEX);
    positionIds.push(t - n);
    documentIds.push(-1);
  }
  return { inputIds, labels, attentionMask, positionIds, documentIds };
}

/**
 * Packs tokenized documents into seqLen rows (a convenience over TokenStore + DocView).
 * @example
 * packExamples([{ inputIds: [1, 2, 0], labels: [1, 2, 0] }, { inputIds: [3, 0], labels: [3, 0] }], { seqLen: 4, padId: 0 })
 * // rows [1,2,0,3] (positions 0,1,2,0) and [0,pad,pad,pad] (the second document's eos, continued)
 */
export function packExamples(examples: readonly Example[], { seqLen, padId }: { seqLen: number; padId: number }): Row[] {
  const b = new TokenStoreBuilder();
  for (const ex of examples) b.add(ex);
  const store = b.build();
  const view = new DocView(store, Int32Array.from({ length: examples.length }, (_, i) => i));
  return Array.from({ length: packedRowCount(view, seqLen) }, (_, r) => packedRow(view, seqLen, r, padId));
}

/**
 * An example right-padded to `length` (pad id, labels -100, mask 0); longer examples are cut to it.
 * @example
 * padRow({ inputIds: [5, 6], labels: [-100, 6] }, 4, 0) // inputIds [5,6,0,0], labels [-100,6,-100,-100], attentionMask [1,1,0,0]
 */
export function padRow(ex: Example, length: number, padId: number): Row {
  const n = Math.min(ex.inputIds.length, length);
  const inputIds = ex.inputIds.slice(0, n), labels = ex.labels.slice(0, n);
  const attentionMask = new Array<number>(length).fill(1, 0, n).fill(0, n);
  for (let t = n; t < length; t++) {
    inputIds.push(padId);
    labels.push(IGNORE_INDEX);
  }
  return { inputIds, labels, attentionMask };
}

/**
 * Rows -> a batch of plain arrays (positionIds/documentIds when every row has them).
 * @example
 * collate([padRow(a, 8, 0), padRow(b, 8, 0)]).inputIds // number[2][8]
 */
export function collate(rows: readonly Row[]): Batch {
  const batch: Batch = {
    inputIds: rows.map((r) => r.inputIds),
    labels: rows.map((r) => r.labels),
    attentionMask: rows.map((r) => r.attentionMask),
  };
  if (rows.length > 0 && rows.every((r) => r.positionIds !== undefined && r.documentIds !== undefined)) {
    return { ...batch, positionIds: rows.map((r) => r.positionIds!), documentIds: rows.map((r) => r.documentIds!) };
  }
  return batch;
}
