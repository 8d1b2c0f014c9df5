// Hard-negative mining (sentence-transformers util.mine_hard_negatives, n-tuple output): for each
// (anchor, positive) row, the corpus texts the current model ranks closest to the anchor, skipping
// the row's positive (and the anchor itself), become negative_1..k.
import { encode } from './encode.js';
import type { SentenceEmbedder } from './model.js';
import { rankByScore } from './evaluate.js';
import type { PairExample } from './pairs.js';

export interface MineOptions {
  /** negatives per row (default 3) */
  numNegatives?: number;
  /** candidate texts (default: every distinct positive of the data) */
  corpus?: readonly string[];
  /** skip the top `skip` candidates after the exclusions (often false negatives; default 0) */
  skip?: number;
  queryPrompt?: string;
  corpusPrompt?: string;
  batchSize?: number;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Rows {anchor, positive, negative_1..k} with the k hardest negatives of each.
 * @example const rows = mineHardNegatives(model, examples, { numNegatives: 2 })
 */
export function mineHardNegatives(model: SentenceEmbedder, examples: readonly PairExample[], opts: MineOptions = {}): Record<string, string>[] {
  const k = opts.numNegatives ?? 3;
  const skip = opts.skip ?? 0;
  const corpus = [...new Set(opts.corpus ?? examples.map((e) => e.texts[1]))];
  if (corpus.length < k + skip + 2) throw new Error(`mineHardNegatives: the corpus has ${corpus.length} distinct texts; ${k} negatives after skipping ${skip} need at least ${k + skip + 2}`);
  const enc = (texts: string[], prompt?: string): Float32Array[] => encode(model, texts, { normalize: true, prompt, batchSize: opts.batchSize, onProgress: opts.onProgress });
  const docs = enc(corpus, opts.corpusPrompt);
  const queries = enc(examples.map((e) => e.texts[0]), opts.queryPrompt);
  return examples.map((e, i) => {
    const scores = docs.map((d) => d.reduce((s, x, j) => s + x * queries[i][j], 0));
    const picked = rankByScore(scores).map((j) => corpus[j]).filter((t) => t !== e.texts[1] && t !== e.texts[0]).slice(skip, skip + k);
    if (picked.length < k) throw new Error(`mineHardNegatives: ${e.where}: only ${picked.length} candidates besides the positive`);
    return { anchor: e.texts[0], positive: e.texts[1], ...Object.fromEntries(picked.map((t, j) => [`negative_${j + 1}`, t])) };
  });
}
