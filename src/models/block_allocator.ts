// Bookkeeping of a paged KV cache's blocks (vLLM's block manager with automatic prefix caching):
// reference counts, a free list, and a map from the hash of a full block's tokens (chained over
// the blocks before it, salted with the adapter) to the block holding their keys/values, so a
// second sequence with the same prompt prefix reuses those blocks. A block nobody references but
// whose hash is known stays cached (evictable, least recently freed first) until it is needed.
import { createHash } from 'node:crypto';

export class BlockAllocator {
  private readonly refs: Int32Array;
  private readonly hashOf: (string | null)[];
  private readonly byHash = new Map<string, number>();
  /** never used or forgotten blocks (taken first) */
  private readonly free: number[];
  /** unreferenced blocks that still hold a known prefix, oldest first (a Map keeps insertion order) */
  private readonly evictable = new Map<number, true>();

  constructor(readonly numBlocks: number) {
    if (!Number.isInteger(numBlocks) || numBlocks < 1) throw new Error(`BlockAllocator: numBlocks must be a positive integer, got ${numBlocks}`);
    this.refs = new Int32Array(numBlocks);
    this.hashOf = new Array<string | null>(numBlocks).fill(null);
    this.free = Array.from({ length: numBlocks }, (_, i) => numBlocks - 1 - i); // pop() hands out block 0 first
  }

  /** blocks some sequence references */
  get used(): number {
    return this.numBlocks - this.free.length - this.evictable.size;
  }

  /** blocks allocate() can still hand out (free or evictable) */
  get available(): number {
    return this.free.length + this.evictable.size;
  }

  /** A block for new tokens, referenced once; evicts the oldest cached prefix when nothing is free. */
  allocate(): number {
    let block = this.free.pop();
    if (block === undefined) {
      const oldest = this.evictable.keys().next();
      if (oldest.done) throw new Error(`BlockAllocator: all ${this.numBlocks} KV blocks are in use`);
      block = oldest.value;
      this.evictable.delete(block);
      this.forget(block);
    }
    this.refs[block] = 1;
    return block;
  }

  /** The block holding this prefix hash, now referenced once more; null when it is not cached. */
  lookup(hash: string): number | null {
    const block = this.byHash.get(hash);
    if (block === undefined) return null;
    if (this.refs[block]++ === 0) this.evictable.delete(block);
    return block;
  }

  /** Records that a (full, written) block holds the tokens with this prefix hash. */
  register(block: number, hash: string): void {
    if (this.byHash.has(hash) || this.hashOf[block] !== null) return; // another block got there first: keep that one
    this.byHash.set(hash, block);
    this.hashOf[block] = hash;
  }

  /** Drops one reference; an unreferenced block becomes free at once (or evictable when it holds a known prefix). */
  release(block: number): void {
    if (this.refs[block] <= 0) throw new Error(`BlockAllocator: block ${block} released more often than it was referenced`);
    if (--this.refs[block] > 0) return;
    if (this.hashOf[block] !== null) this.evictable.set(block, true);
    else this.free.push(block);
  }

  refCount(block: number): number {
    return this.refs[block];
  }

  private forget(block: number): void {
    const h = this.hashOf[block];
    if (h !== null) this.byHash.delete(h);
    this.hashOf[block] = null;
  }
}

/**
 * The chained hashes of the full blocks of `tokens`: hash i covers tokens [0, (i + 1) * blockSize),
 * salted (the adapter: the same tokens under another LoRA adapter have other keys/values).
 * @example prefixHashes([1, 2, 3, 4, 5], 2, 'base')  // two hashes: [1, 2] and [1, 2, 3, 4]
 */
export function prefixHashes(tokens: readonly number[], blockSize: number, salt: string): string[] {
  const out: string[] = [];
  let prev = salt;
  for (let b = 0; (b + 1) * blockSize <= tokens.length; b++) {
    prev = createHash('sha1').update(prev).update(Int32Array.from(tokens.slice(b * blockSize, (b + 1) * blockSize))).digest('hex');
    out.push(prev);
  }
  return out;
}
