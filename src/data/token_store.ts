// Tokenized examples held flat: one Int32Array of ids, one of labels (null while every label equals
// its id, as in pretraining, to halve the memory) and document offsets. A multi-GB corpus costs
// 4-8 bytes a token instead of a JS array per example, and the same buffers are the disk cache.
import type { Example } from './example.js';

/** Documents d = 0..count-1 hold tokens [offsets[d], offsets[d+1]). */
export interface TokenStore {
  readonly ids: Int32Array;
  /** null: labels equal ids */
  readonly labels: Int32Array | null;
  /** count + 1 entries, offsets[0] = 0 */
  readonly offsets: Float64Array;
}

export const storeCount = (s: TokenStore): number => s.offsets.length - 1;
export const storeTokens = (s: TokenStore): number => s.offsets[s.offsets.length - 1];

/** An Int32Array that grows by doubling. */
class IntBuffer {
  data: Int32Array;
  length = 0;
  constructor(capacity = 1024) { this.data = new Int32Array(capacity); }

  reserve(extra: number): void {
    if (this.length + extra <= this.data.length) return;
    let cap = this.data.length * 2;
    while (cap < this.length + extra) cap *= 2;
    const next = new Int32Array(cap);
    next.set(this.data.subarray(0, this.length));
    this.data = next;
  }

  push(values: ArrayLike<number>): void {
    this.reserve(values.length);
    this.data.set(values, this.length);
    this.length += values.length;
  }

  view(start = 0, end = this.length): Int32Array { return this.data.subarray(start, end); }
}

/**
 * Collects examples into a TokenStore.
 * @example
 * const b = new TokenStoreBuilder();
 * b.add({ inputIds: [5, 6], labels: [-100, 6] });
 * const store = b.build();
 */
export class TokenStoreBuilder {
  private readonly ids = new IntBuffer();
  private labels: IntBuffer | null = null;
  private readonly offsets: number[] = [0];

  get count(): number { return this.offsets.length - 1; }
  get tokens(): number { return this.ids.length; }

  /** Labels stop being implicit at the first example whose labels differ from its ids. */
  private materializeLabels(): IntBuffer {
    if (this.labels === null) {
      this.labels = new IntBuffer(this.ids.data.length);
      this.labels.push(this.ids.view());
    }
    return this.labels;
  }

  add(ex: Example): void {
    this.addArrays(ex.inputIds, ex.labels);
  }

  addArrays(ids: ArrayLike<number>, labels: ArrayLike<number> | null): void {
    if (labels !== null && labels.length !== ids.length) throw new Error(`TokenStoreBuilder: ${labels.length} labels for ${ids.length} ids`);
    let same = labels === null;
    if (!same && this.labels === null) {
      same = true;
      for (let i = 0; i < ids.length && same; i++) same = ids[i] === labels![i];
    }
    if (!same) this.materializeLabels().push(labels!);
    else if (this.labels !== null) this.labels.push(ids);
    this.ids.push(ids);
    this.offsets.push(this.ids.length);
  }

  /** Appends every document of a store (a cache hit) in one copy. */
  addStore(s: TokenStore): void {
    if (s.labels !== null) this.materializeLabels().push(s.labels);
    else if (this.labels !== null) this.labels.push(s.ids);
    const base = this.ids.length;
    this.ids.push(s.ids);
    for (let d = 1; d <= storeCount(s); d++) this.offsets.push(base + s.offsets[d]);
  }

  /** Documents [from, count) as a store of views into the builder's buffers (valid until the next add). */
  slice(from: number): TokenStore {
    const base = this.offsets[from];
    const end = this.ids.length;
    return {
      ids: this.ids.view(base, end),
      labels: this.labels === null ? null : this.labels.view(base, end),
      offsets: Float64Array.from(this.offsets.slice(from), (o) => o - base),
    };
  }

  build(): TokenStore {
    return {
      ids: this.ids.view().slice(),
      labels: this.labels === null ? null : this.labels.view().slice(),
      offsets: Float64Array.from(this.offsets),
    };
  }
}

/**
 * A subset of a store's documents (a train or eval split) in a fixed order, with the running token
 * count so that packing can address the subset as one concatenated stream without copying it.
 * @example
 * const view = new DocView(store, Int32Array.from([0, 2, 5]));
 * view.tokens // total tokens of documents 0, 2 and 5
 */
export class DocView {
  /** cum[j] = tokens of docs[0..j); cum.length = docs.length + 1 */
  readonly cum: Float64Array;
  constructor(readonly store: TokenStore, readonly docs: Int32Array) {
    this.cum = new Float64Array(docs.length + 1);
    for (let j = 0; j < docs.length; j++) this.cum[j + 1] = this.cum[j] + this.docLength(j);
  }

  get count(): number { return this.docs.length; }
  get tokens(): number { return this.cum[this.docs.length]; }

  docLength(j: number): number {
    const d = this.docs[j];
    return this.store.offsets[d + 1] - this.store.offsets[d];
  }

  /** Ids and labels of the j-th document, tokens [from, to) of it. */
  doc(j: number, from = 0, to = this.docLength(j)): Example {
    const a = this.store.offsets[this.docs[j]];
    const inputIds = Array.from(this.store.ids.subarray(a + from, a + to));
    const labels = this.store.labels === null ? inputIds.slice() : Array.from(this.store.labels.subarray(a + from, a + to));
    return { inputIds, labels };
  }

  /** The j with cum[j] <= pos < cum[j+1] (the document holding stream position pos). */
  docAt(pos: number): number {
    let lo = 0, hi = this.docs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.cum[mid] <= pos) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}

