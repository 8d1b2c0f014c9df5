// DeepSpeed's block-sparse attention patterns (the "sparse_attention" section of ds_config.json,
// deepspeed/ops/sparse_attention/sparsity_config.py): dense, fixed (Child et al. 2019), variable,
// bigbird (Zaheer et al. 2020), bslongformer (block Longformer) and local_sliding_window. The keys
// and defaults are DeepSpeed's; random blocks come from a seeded Philox stream (DeepSpeed draws
// from Python's unseeded `random`), so a layout is the same on every run and after reloading.
import { checkNumber } from '../../io/check.js';
import { countersFor, fillRandom } from '../../tensor/rng.js';
import { BlockLayout } from './block_layout.js';

export const SPARSITY_MODES = ['dense', 'fixed', 'variable', 'bigbird', 'bslongformer', 'local_sliding_window'] as const;
export type SparsityMode = (typeof SPARSITY_MODES)[number];

/** Every key of every mode (unused ones keep their defaults); snake_case as in ds_config.json. */
export interface SparsityConfig {
  mode: SparsityMode;
  block: number;
  different_layout_per_head: boolean;
  /** 'unidirectional' keeps only blocks on or below the diagonal (decoders) */
  attention: 'unidirectional' | 'bidirectional';
  num_local_blocks: number;
  num_global_blocks: number;
  horizontal_global_attention: boolean;
  num_different_global_patterns: number;
  num_random_blocks: number;
  local_window_blocks: number[];
  global_block_indices: number[];
  global_block_end_indices: number[] | null;
  num_sliding_window_blocks: number;
  /** Philox seed of the random blocks (Kestrel's addition) */
  seed: number;
  /**
   * tokens the layout is built for once (Kestrel's addition); shorter sequences use its leading
   * blocks, so training, prefill and decode see one pattern. null: the model's choice
   */
  max_seq_len: number | null;
}

const DEFAULTS: Omit<SparsityConfig, 'mode'> = {
  block: 16, different_layout_per_head: false, attention: 'bidirectional', num_local_blocks: 4, num_global_blocks: 1,
  horizontal_global_attention: false, num_different_global_patterns: 1, num_random_blocks: 0, local_window_blocks: [4],
  global_block_indices: [0], global_block_end_indices: null, num_sliding_window_blocks: 3, seed: 0, max_seq_len: null,
};
// DeepSpeed's defaults that differ by mode
const MODE_DEFAULTS: Partial<Record<SparsityMode, Partial<SparsityConfig>>> = {
  bigbird: { num_random_blocks: 1 },
  local_sliding_window: { attention: 'unidirectional' },
};

const intList = (v: unknown, what: string): number[] => {
  if (!Array.isArray(v) || v.length === 0) throw new Error(`${what} must be a non-empty list of integers, got ${JSON.stringify(v)}`);
  return v.map((x, i) => checkNumber(x, { int: true, min: 0 }, `${what}[${i}]`));
};
const bool = (v: unknown, what: string): boolean => {
  if (typeof v !== 'boolean') throw new Error(`${what} must be true or false, got ${JSON.stringify(v)}`);
  return v;
};

/**
 * Reads and checks a sparsity config (ds_config.json's "sparse_attention" object); `where` names
 * its source in errors.
 * @example parseSparsityConfig({ mode: 'bslongformer', block: 64, attention: 'unidirectional' }, 'run.json')
 */
export function parseSparsityConfig(json: unknown, where = 'sparse_attention'): SparsityConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${where}: must be a JSON object`);
  const o = json as Record<string, unknown>;
  const mode = (o.mode ?? 'fixed') as SparsityMode;
  if (!SPARSITY_MODES.includes(mode)) throw new Error(`${where}.mode must be one of ${SPARSITY_MODES.join(', ')}, got ${JSON.stringify(o.mode)}`);
  const known = new Set(['mode', ...Object.keys(DEFAULTS)]);
  for (const key of Object.keys(o)) if (!known.has(key)) throw new Error(`${where}: unknown key '${key}'`);
  const c: SparsityConfig = { ...DEFAULTS, ...MODE_DEFAULTS[mode], mode };
  const f = (key: string): string => `${where}.${key}`;
  const int = (key: keyof SparsityConfig, min: number): void => {
    if (o[key] !== undefined) (c[key] as number) = checkNumber(o[key], { int: true, min }, f(key));
  };
  int('block', 1); int('num_local_blocks', 1); int('num_global_blocks', 1); int('num_different_global_patterns', 1);
  int('num_random_blocks', 0); int('num_sliding_window_blocks', 1); int('seed', 0);
  if (o.max_seq_len !== undefined && o.max_seq_len !== null) c.max_seq_len = checkNumber(o.max_seq_len, { int: true, min: 1 }, f('max_seq_len'));
  for (const key of ['different_layout_per_head', 'horizontal_global_attention'] as const)
    if (o[key] !== undefined) c[key] = bool(o[key], f(key));
  if (o.attention !== undefined) {
    if (o.attention !== 'unidirectional' && o.attention !== 'bidirectional')
      throw new Error(`${f('attention')} must be 'unidirectional' or 'bidirectional', got ${JSON.stringify(o.attention)}`);
    c.attention = o.attention;
  }
  if (o.local_window_blocks !== undefined) c.local_window_blocks = intList(o.local_window_blocks, f('local_window_blocks'));
  if (o.global_block_indices !== undefined) c.global_block_indices = intList(o.global_block_indices, f('global_block_indices'));
  if (o.global_block_end_indices !== undefined && o.global_block_end_indices !== null)
    c.global_block_end_indices = intList(o.global_block_end_indices, f('global_block_end_indices'));
  checkCombination(c, where);
  return c;
}

// DeepSpeed's constructor checks, with the field names
function checkCombination(c: SparsityConfig, where: string): void {
  const bad = (why: string): never => {
    throw new Error(`${where}: ${why}`);
  };
  if (c.horizontal_global_attention && c.attention !== 'bidirectional')
    bad('horizontal_global_attention needs attention "bidirectional"');
  if (c.mode === 'fixed') {
    if (c.num_local_blocks % c.num_global_blocks !== 0)
      bad(`num_local_blocks ${c.num_local_blocks} must be a multiple of num_global_blocks ${c.num_global_blocks}`);
    if (c.num_different_global_patterns > 1 && !c.different_layout_per_head)
      bad('num_different_global_patterns > 1 needs different_layout_per_head true');
    if (c.num_different_global_patterns > c.num_local_blocks / c.num_global_blocks)
      bad(`num_different_global_patterns ${c.num_different_global_patterns} exceeds num_local_blocks / num_global_blocks = ${c.num_local_blocks / c.num_global_blocks}`);
  }
  const ends = c.global_block_end_indices;
  if (ends) {
    if (ends.length !== c.global_block_indices.length)
      bad(`global_block_end_indices has ${ends.length} entries, global_block_indices ${c.global_block_indices.length}`);
    ends.forEach((e, i) => {
      if (c.global_block_indices[i] >= e) bad(`global block ${i}: start ${c.global_block_indices[i]} must be below its end ${e}`);
    });
  }
}

/**
 * The [heads, nb, nb] layout of `cfg` for `seqLen` tokens (nb = ceil(seqLen / block); DeepSpeed
 * needs seqLen to be a multiple of the block, Kestrel lets the last block be partial).
 * @example makeLayout(parseSparsityConfig({ mode: 'bigbird', block: 16 }), 9, 4096)
 */
export function makeLayout(cfg: SparsityConfig, heads: number, seqLen: number): BlockLayout {
  checkNumber(heads, { int: true, min: 1 }, 'makeLayout: heads');
  checkNumber(seqLen, { int: true, min: 1 }, 'makeLayout: seqLen');
  const nb = Math.ceil(seqLen / cfg.block);
  const layout = BlockLayout.zeros(cfg.block, heads, nb);
  const distinct = cfg.different_layout_per_head && cfg.mode !== 'local_sliding_window' ? heads : 1;
  for (let h = 0; h < distinct; h++) HEAD_LAYOUTS[cfg.mode](cfg, new HeadView(layout, h));
  for (let h = distinct; h < heads; h++) layout.data.copyWithin(h * nb * nb, 0, nb * nb);
  return layout;
}

/** One head's nb x nb blocks. */
class HeadView {
  readonly nb: number;
  constructor(private readonly layout: BlockLayout, readonly h: number) {
    this.nb = layout.nBlocks;
  }
  /** Sets rows [r0, r1) x cols [c0, c1), clipped to the layout. */
  fill(r0: number, r1: number, c0: number, c1: number): void {
    for (let r = Math.max(0, r0); r < Math.min(r1, this.nb); r++)
      for (let c = Math.max(0, c0); c < Math.min(c1, this.nb); c++) this.layout.set(this.h, r, c);
  }
  /** Keeps only blocks on or below the diagonal (torch.tril). */
  tril(): void {
    for (let r = 0; r < this.nb; r++) for (let c = r + 1; c < this.nb; c++) this.layout.set(this.h, r, c, false);
  }
  /** Blocks of one diagonal window [start, end): lower triangle only when unidirectional. */
  window(start: number, end: number, uni: boolean): void {
    for (let r = start; r < Math.min(end, this.nb); r++) this.fill(r, r + 1, start, uni ? r + 1 : end);
  }
  /** `count` distinct random columns below `limit` in each row (partial Fisher-Yates on Philox draws). */
  random(count: number, seed: number, limit: (row: number) => number): void {
    if (count > this.nb) throw new Error(`sparse_attention: num_random_blocks ${count} exceeds the ${this.nb} blocks of a row`);
    const u = new Float64Array(this.nb);
    for (let r = 0; r < this.nb; r++) {
      fillRandom(u, 'uniform', seed, countersFor('uniform', this.nb) * (this.h * this.nb + r));
      const n = limit(r);
      const pool = Array.from({ length: n }, (_, i) => i);
      for (let t = 0; t < Math.min(count, n); t++) {
        const pick = t + Math.floor(u[t] * (n - t));
        [pool[t], pool[pick]] = [pool[pick], pool[t]];
        this.fill(r, r + 1, pool[t], pool[t] + 1);
      }
    }
  }
  /** Global blocks [s, e): every later (or every, bidirectional) row attends them; horizontal: they attend all. */
  global(s: number, e: number, uni: boolean, horizontal: boolean): void {
    if (s >= this.nb) return;
    if (horizontal) this.fill(s, e, 0, this.nb);
    this.fill(uni ? s : 0, this.nb, s, e);
  }
  /** Row r attends blocks r - w .. r + w (w = count / 2), or only up to r when unidirectional. */
  sliding(count: number, uni: boolean): void {
    if (this.nb < count) throw new Error(`sparse_attention: num_sliding_window_blocks ${count} exceeds the ${this.nb} blocks of the sequence`);
    const w = Math.floor(count / 2);
    for (let r = 0; r < this.nb; r++) this.fill(r, r + 1, r - w, uni ? r + 1 : r + w + 1);
  }
}

type HeadLayout = (c: SparsityConfig, v: HeadView) => void;

const globalRanges = (c: SparsityConfig): [number, number][] =>
  c.global_block_indices.map((s, i) => [s, c.global_block_end_indices ? c.global_block_end_indices[i] : s + 1]);

const HEAD_LAYOUTS: Record<SparsityMode, HeadLayout> = {
  dense: (_c, v) => v.fill(0, v.nb, 0, v.nb),
  fixed: (c, v) => {
    const uni = c.attention === 'unidirectional';
    const L = c.num_local_blocks, G = c.num_global_blocks;
    for (let i = 0; i < v.nb; i += L) v.window(i, i + L, uni);
    // global representatives: the last G blocks of each window, the head's pattern moving them earlier
    const first = L - (1 + (v.h % c.num_different_global_patterns)) * G;
    const end = v.nb - (v.nb % L);
    for (let i = first; i < end; i += L) v.global(i, i + G, uni, c.horizontal_global_attention);
    if (end < v.nb) {
      const start = Math.min(end + first, v.nb - G);
      v.global(start, start + G, uni, c.horizontal_global_attention);
    }
  },
  variable: (c, v) => {
    const uni = c.attention === 'unidirectional';
    // DeepSpeed draws these from every column even when unidirectional; Kestrel keeps them causal
    if (c.num_random_blocks > 0) v.random(c.num_random_blocks, c.seed, (r) => (uni ? r + 1 : v.nb));
    let start = 0;
    for (const size of c.local_window_blocks) {
      v.window(start, start + size, uni);
      start += size;
    }
    const last = c.local_window_blocks[c.local_window_blocks.length - 1];
    for (let i = start; i < v.nb; i += last) v.window(i, i + last, uni);
    for (const [s, e] of globalRanges(c)) v.global(s, e, uni, c.horizontal_global_attention);
  },
  bigbird: (c, v) => {
    const uni = c.attention === 'unidirectional';
    if (c.num_random_blocks > 0) v.random(c.num_random_blocks, c.seed, (r) => (uni ? r + 1 : v.nb));
    v.sliding(c.num_sliding_window_blocks, false);
    if (v.nb < c.num_global_blocks) throw new Error(`sparse_attention: num_global_blocks ${c.num_global_blocks} exceeds the ${v.nb} blocks of the sequence`);
    v.global(0, c.num_global_blocks, false, true);
    if (uni) v.tril();
  },
  bslongformer: (c, v) => {
    v.sliding(c.num_sliding_window_blocks, false);
    for (const [s, e] of globalRanges(c)) v.global(s, e, false, true);
    if (c.attention === 'unidirectional') v.tril();
  },
  local_sliding_window: (c, v) => v.sliding(c.num_sliding_window_blocks, c.attention === 'unidirectional'),
};
