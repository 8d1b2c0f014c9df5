// The paged KV cache of continuous batching (vLLM's PagedAttention): one pool of fixed-size
// blocks per model and layer ([blocks * blockSize, Hkv, hd] float32 keys and values), a block
// table per sequence, blocks shared by sequences with the same prompt prefix (BlockAllocator).
// A forward step runs a ragged batch flattened to [1, N] tokens: the step's layout says which
// sequence and position each token has; each layer writes its new keys/values into their slots
// and attends through the pagedAttention op. Like KVCache, it is passed into forward explicitly.
import { tensor } from '../ops/creation.js';
import { to } from '../ops/elementwise.js';
import { empty } from '../ops/dispatch.js';
import { type PagedAttentionOptions, type PagedLayout, pagedAttention, pagedWrite_ } from '../ops/paged.js';
import { select, transpose, unsqueeze } from '../ops/view.js';
import { keep } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { BlockAllocator, prefixHashes } from './block_allocator.js';

export interface PagedCacheShape {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
}

/** One sequence's place in the cache. */
export interface PagedSequence {
  /** its blocks in token order */
  blocks: number[];
  /** tokens whose keys/values are written (a reused prefix counts from the start) */
  cached: number;
  /** full blocks whose prefix hash is registered, and the last such hash (the chain's head) */
  hashed: number;
  lastHash: string;
  /** the salt of its hashes (the adapter) */
  salt: string;
}

/** The tokens one sequence adds in a step: positions start .. start + count - 1. */
export interface StepPart {
  seq: PagedSequence;
  start: number;
  count: number;
}

export class PagedKVCache {
  readonly allocator: BlockAllocator;
  readonly keys: Tensor[];
  readonly values: Tensor[];
  private step: { layout: PagedLayout; slots: Tensor } | null = null;

  constructor(readonly shape: PagedCacheShape, readonly numBlocks: number, readonly blockSize: number, backend?: string) {
    if (!Number.isInteger(blockSize) || blockSize < 1) throw new Error(`PagedKVCache: block size must be a positive integer, got ${blockSize}`);
    this.allocator = new BlockAllocator(numBlocks);
    const pool = (): Tensor => keep(empty([numBlocks * blockSize, shape.numKvHeads, shape.headDim], 'float32', { backend, tag: 'activation' }));
    this.keys = Array.from({ length: shape.numLayers }, pool);
    this.values = Array.from({ length: shape.numLayers }, pool);
  }

  /** float32 keys and values of every layer for one block */
  static bytesPerBlock(s: PagedCacheShape, blockSize: number): number {
    return 2 * s.numLayers * blockSize * s.numKvHeads * s.headDim * 4;
  }

  /** The cache that fits in `megabytes` (at least one block). */
  static withBudget(s: PagedCacheShape, megabytes: number, blockSize: number, backend?: string): PagedKVCache {
    const blocks = Math.floor((megabytes * 2 ** 20) / PagedKVCache.bytesPerBlock(s, blockSize));
    if (blocks < 1) throw new Error(`PagedKVCache: ${megabytes} MB holds no block of ${blockSize} tokens (${PagedKVCache.bytesPerBlock(s, blockSize)} bytes each)`);
    return new PagedKVCache(s, blocks, blockSize, backend);
  }

  /** Blocks a sequence of `tokens` tokens occupies. */
  blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.blockSize);
  }

  /**
   * A new sequence, reusing the cached blocks of its prompt's longest known full-block prefix
   * (never the block of the last prompt token: its logits are needed, so it is computed).
   */
  open(prompt: readonly number[], salt: string): PagedSequence {
    const seq: PagedSequence = { blocks: [], cached: 0, hashed: 0, lastHash: salt, salt };
    for (const hash of prefixHashes(prompt.slice(0, prompt.length - 1), this.blockSize, salt)) {
      const block = this.allocator.lookup(hash);
      if (block === null) break;
      seq.blocks.push(block);
      seq.lastHash = hash;
    }
    seq.hashed = seq.blocks.length;
    seq.cached = seq.blocks.length * this.blockSize;
    return seq;
  }

  /** Grows the sequence's table to hold `tokens` tokens (the caller checked the allocator has the blocks). */
  reserve(seq: PagedSequence, tokens: number): void {
    while (seq.blocks.length < this.blocksFor(tokens)) seq.blocks.push(this.allocator.allocate());
  }

  /** After a step: `tokens` (the sequence's first seq.cached tokens at least) registers its newly full blocks for reuse. */
  commit(seq: PagedSequence, tokens: readonly number[]): void {
    const bs = this.blockSize;
    while ((seq.hashed + 1) * bs <= seq.cached) {
      const [hash] = prefixHashes(tokens.slice(seq.hashed * bs, (seq.hashed + 1) * bs), bs, seq.lastHash);
      this.allocator.register(seq.blocks[seq.hashed], hash);
      seq.lastHash = hash;
      seq.hashed++;
    }
  }

  /** Releases the sequence's blocks (at once: a finished or disconnected request). */
  close(seq: PagedSequence): void {
    for (const b of seq.blocks) this.allocator.release(b);
    seq.blocks = [];
  }

  /** Sets the layout of the next forward: its tokens are the parts' tokens in order (inputIds [1, N]). */
  beginStep(parts: readonly StepPart[]): void {
    this.endStep();
    const bs = this.blockSize;
    const width = Math.max(1, ...parts.map((p) => p.seq.blocks.length));
    const table = parts.map((p) => Array.from({ length: width }, (_, i) => p.seq.blocks[i] ?? 0));
    const seq: number[] = [];
    const pos: number[] = [];
    const slots: number[] = [];
    parts.forEach((p, s) => {
      if (p.start + p.count > p.seq.blocks.length * bs) throw new Error(`PagedKVCache: positions up to ${p.start + p.count} exceed the sequence's ${p.seq.blocks.length} blocks`);
      for (let t = p.start; t < p.start + p.count; t++) {
        seq.push(s);
        pos.push(t);
        slots.push(p.seq.blocks[Math.floor(t / bs)] * bs + (t % bs));
      }
    });
    const backend = this.keys[0]?.backendName;
    this.step = {
      layout: {
        blockTable: keep(tensor(table, { dtype: 'int32', backend })),
        seq: keep(tensor(seq, { dtype: 'int32', backend })),
        pos: keep(tensor(pos, { dtype: 'int32', backend })),
        blockSize: bs,
      },
      slots: keep(tensor(slots, { dtype: 'int64', backend })),
    };
  }

  /** Frees the step's layout tensors. */
  endStep(): void {
    if (!this.step) return;
    const { layout, slots } = this.step;
    for (const t of [layout.blockTable, layout.seq, layout.pos, slots]) t.dispose();
    this.step = null;
  }

  /**
   * Writes one layer's new keys/values and attends: q [1, H, N, hd], k/v [1, Hkv, N, hd] -> [1, H, N, hd]
   * (q's dtype). Each token sees its own sequence's keys up to its own position.
   */
  attend(layer: number, q: Tensor, k: Tensor, v: Tensor, opts: PagedAttentionOptions): Tensor {
    if (!this.step) throw new Error('PagedKVCache: forward called without beginStep() (the step layout)');
    if (q.ndim !== 4 || q.shape[0] !== 1 || q.shape[2] !== this.step.slots.shape[0])
      throw new Error(`PagedKVCache: expected q [1, H, ${this.step.slots.shape[0]}, hd] (the step's tokens as one row), got [${q.shape}]`);
    const rows = (t: Tensor): Tensor => transpose(select(t, 0, 0), 0, 1); // [1, heads, N, hd] -> [N, heads, hd]
    pagedWrite_(this.keys[layer], rows(k), this.step.slots);
    pagedWrite_(this.values[layer], rows(v), this.step.slots);
    const o = pagedAttention(rows(q), this.keys[layer], this.values[layer], this.step.layout, opts);
    return to(unsqueeze(transpose(o, 0, 1), 0), q.dtype);
  }

  dispose(): void {
    this.endStep();
    for (const t of [...this.keys, ...this.values]) t.dispose();
  }
}
