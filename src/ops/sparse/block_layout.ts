// A block-sparse attention layout: which [block x block] tiles of the attention matrix are
// computed, per head, as DeepSpeed's sparse attention stores it ([heads, nBlocks, nBlocks] of 0/1,
// deepspeed/ops/sparse_attention/sparsity_config.py). The kernels read it as CSR (per head and
// query block, the key blocks to visit) and CSC (per head and key block, the query blocks).

/** Compressed rows: entries of row r (r = head * nBlocks + block) are idx[ptr[r] .. ptr[r + 1]). */
export interface BlockIndex {
  ptr: Int32Array;
  idx: Int32Array;
}

export class BlockLayout {
  private readonly index = new Map<string, BlockIndex>();

  /** data[(h * nBlocks + i) * nBlocks + j] = 1 when query block i of head h attends key block j. */
  constructor(readonly block: number, readonly heads: number, readonly nBlocks: number, readonly data: Uint8Array) {
    if (!Number.isInteger(block) || block < 1) throw new Error(`BlockLayout: block must be a positive integer, got ${block}`);
    if (data.length !== heads * nBlocks * nBlocks)
      throw new Error(`BlockLayout: ${data.length} entries for ${heads} heads x ${nBlocks} x ${nBlocks} blocks`);
  }

  static zeros(block: number, heads: number, nBlocks: number): BlockLayout {
    return new BlockLayout(block, heads, nBlocks, new Uint8Array(heads * nBlocks * nBlocks));
  }

  get(h: number, i: number, j: number): boolean {
    return this.data[(h * this.nBlocks + i) * this.nBlocks + j] !== 0;
  }

  set(h: number, i: number, j: number, on = true): void {
    this.data[(h * this.nBlocks + i) * this.nBlocks + j] = on ? 1 : 0;
  }

  /** Blocks needed for a sequence of `length` tokens (the last one may be partial). */
  blocksFor(length: number): number {
    const nb = Math.ceil(length / this.block);
    if (nb > this.nBlocks)
      throw new Error(`BlockLayout: ${length} tokens need ${nb} blocks of ${this.block}, the layout has ${this.nBlocks}`);
    return nb;
  }

  /** Fraction of the leading nb x nb blocks that are computed (over all heads). */
  density(nb = this.nBlocks): number {
    let on = 0;
    for (let h = 0; h < this.heads; h++)
      for (let i = 0; i < nb; i++) for (let j = 0; j < nb; j++) on += this.data[(h * this.nBlocks + i) * this.nBlocks + j];
    return on / (this.heads * nb * nb);
  }

  /** Key blocks of each (head, query block) over the leading nb x nb blocks; cached. */
  rows(nb: number): BlockIndex {
    return this.cached(`r${nb}`, nb, (h, a, b) => this.get(h, a, b));
  }

  /** Query blocks of each (head, key block) over the leading nb x nb blocks; cached. */
  cols(nb: number): BlockIndex {
    return this.cached(`c${nb}`, nb, (h, a, b) => this.get(h, b, a));
  }

  private cached(key: string, nb: number, on: (h: number, a: number, b: number) => boolean): BlockIndex {
    let found = this.index.get(key);
    if (found) return found;
    const ptr = new Int32Array(this.heads * nb + 1);
    const idx: number[] = [];
    for (let h = 0; h < this.heads; h++)
      for (let a = 0; a < nb; a++) {
        for (let b = 0; b < nb; b++) if (on(h, a, b)) idx.push(b);
        ptr[h * nb + a + 1] = idx.length;
      }
    found = { ptr, idx: Int32Array.from(idx) };
    this.index.set(key, found);
    return found;
  }

  /**
   * The element mask this layout means for Tq queries at positions Tk - Tq .. Tk - 1 against Tk
   * keys: [heads, Tq, Tk], 1 = attend (causal also hides keys after the query).
   */
  elementMask(Tq: number, Tk: number, causal: boolean): Uint8Array {
    this.blocksFor(Tk);
    const m = new Uint8Array(this.heads * Tq * Tk);
    const shift = Tk - Tq;
    for (let h = 0; h < this.heads; h++)
      for (let i = 0; i < Tq; i++) {
        const qb = Math.floor((i + shift) / this.block);
        for (let j = 0; j < Tk; j++)
          if (this.get(h, qb, Math.floor(j / this.block)) && !(causal && j > i + shift)) m[(h * Tq + i) * Tk + j] = 1;
      }
    return m;
  }
}
