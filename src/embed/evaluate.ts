// Evaluation of embedding models, as sentence-transformers' InformationRetrievalEvaluator and
// EmbeddingSimilarityEvaluator compute it: retrieval by cosine over a corpus (recall@k = share of
// a query's relevant documents in its top k, MRR@10, NDCG@10 with binary relevance) and STS
// (Spearman rank correlation of the pairs' cosine against their gold scores, ties ranked by average).
import { encode } from './encode.js';
import type { SentenceEmbedder } from './model.js';

export interface RetrievalSet {
  queries: Record<string, string>;
  corpus: Record<string, string>;
  /** query id -> the ids of its relevant documents */
  qrels: Record<string, readonly string[]>;
}

export interface RetrievalOptions {
  /** cut-offs for recall@k (default [1, 5, 10]) */
  recallAt?: number[];
  queryPromptName?: string;
  corpusPromptName?: string;
  /** literal prompts (win over the names) */
  queryPrompt?: string;
  corpusPrompt?: string;
  batchSize?: number;
}

const dot = (a: Float32Array, b: Float32Array): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

/** Corpus indices by decreasing score (ties by corpus order). */
export function rankByScore(scores: readonly number[]): number[] {
  return scores.map((s, i) => [s, i] as const).sort((x, y) => y[0] - x[0] || x[1] - y[1]).map(([, i]) => i);
}

/**
 * Recall@k, MRR@10 and NDCG@10 of one ranking (document ids, best first) against the relevant set.
 * @example rankingMetrics(['d3', 'd1'], new Set(['d1']), [1, 2]) // { 'recall@1': 0, 'recall@2': 1, 'mrr@10': 0.5, 'ndcg@10': 0.63 }
 */
export function rankingMetrics(ranked: readonly string[], relevant: ReadonlySet<string>, recallAt: readonly number[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of recallAt) out[`recall@${k}`] = ranked.slice(0, k).filter((d) => relevant.has(d)).length / relevant.size;
  const first = ranked.slice(0, 10).findIndex((d) => relevant.has(d));
  out['mrr@10'] = first < 0 ? 0 : 1 / (first + 1);
  const dcg = ranked.slice(0, 10).reduce((s, d, i) => s + (relevant.has(d) ? 1 / Math.log2(i + 2) : 0), 0);
  let idcg = 0;
  for (let i = 0; i < Math.min(relevant.size, 10); i++) idcg += 1 / Math.log2(i + 2);
  out['ndcg@10'] = dcg / idcg;
  return out;
}

/**
 * Mean retrieval metrics over the queries that have relevant documents.
 * @example const m = evaluateRetrieval(model, { queries, corpus, qrels }); m['recall@1']
 */
export function evaluateRetrieval(model: SentenceEmbedder, set: RetrievalSet, opts: RetrievalOptions = {}): Record<string, number> {
  const recallAt = opts.recallAt ?? [1, 5, 10];
  const qids = Object.keys(set.queries).filter((q) => (set.qrels[q]?.length ?? 0) > 0);
  const dids = Object.keys(set.corpus);
  if (!qids.length || !dids.length) throw new Error(`evaluateRetrieval: ${qids.length} queries with relevant documents and ${dids.length} corpus documents; both must be > 0`);
  const enc = (texts: string[], name?: string, prompt?: string): Float32Array[] =>
    encode(model, texts, { normalize: true, promptName: name, prompt, batchSize: opts.batchSize });
  const q = enc(qids.map((i) => set.queries[i]), opts.queryPromptName, opts.queryPrompt);
  const d = enc(dids.map((i) => set.corpus[i]), opts.corpusPromptName, opts.corpusPrompt);
  const sums: Record<string, number> = {};
  qids.forEach((qid, i) => {
    const ranked = rankByScore(d.map((v) => dot(q[i], v))).map((j) => dids[j]);
    for (const [k, v] of Object.entries(rankingMetrics(ranked, new Set(set.qrels[qid]), recallAt))) sums[k] = (sums[k] ?? 0) + v;
  });
  return Object.fromEntries(Object.entries(sums).map(([k, v]) => [k, v / qids.length]));
}

/** Ranks 1..n with ties given their average rank. */
function ranks(xs: readonly number[]): number[] {
  const order = xs.map((x, i) => [x, i] as const).sort((a, b) => a[0] - b[0]);
  const r = new Array<number>(xs.length);
  for (let s = 0; s < order.length;) {
    let e = s;
    while (e + 1 < order.length && order[e + 1][0] === order[s][0]) e++;
    for (let j = s; j <= e; j++) r[order[j][1]] = (s + e) / 2 + 1;
    s = e + 1;
  }
  return r;
}

/**
 * Spearman's rank correlation (Pearson's r of the ranks).
 * @example spearman([1, 2, 3], [10, 20, 15]) // 0.5
 */
export function spearman(a: readonly number[], b: readonly number[]): number {
  if (a.length !== b.length || a.length < 2) throw new Error(`spearman: needs two series of the same length >= 2, got ${a.length} and ${b.length}`);
  const [ra, rb] = [ranks(a), ranks(b)];
  const mean = (x: number[]): number => x.reduce((s, v) => s + v, 0) / x.length;
  const [ma, mb] = [mean(ra), mean(rb)];
  let num = 0, da = 0, db = 0;
  for (let i = 0; i < ra.length; i++) {
    num += (ra[i] - ma) * (rb[i] - mb);
    da += (ra[i] - ma) ** 2;
    db += (rb[i] - mb) ** 2;
  }
  return da === 0 || db === 0 ? 0 : num / Math.sqrt(da * db);
}

/**
 * STS: Spearman of cos(sentence1, sentence2) against the gold scores.
 * @example evaluateSts(model, [['a cat', 'a kitten', 0.9], ['a cat', 'a car', 0.1]])
 */
export function evaluateSts(model: SentenceEmbedder, pairs: readonly (readonly [string, string, number])[], opts: { batchSize?: number } = {}): { spearman: number } {
  const a = encode(model, pairs.map((p) => p[0]), { normalize: true, batchSize: opts.batchSize });
  const b = encode(model, pairs.map((p) => p[1]), { normalize: true, batchSize: opts.batchSize });
  return { spearman: spearman(a.map((x, i) => dot(x, b[i])), pairs.map((p) => p[2])) };
}

/**
 * A retrieval set from (anchor, positive, ...) rows: the anchors are the queries, every distinct
 * positive and negative text a document, and a query's positive its relevant document.
 * @example evaluateRetrieval(model, retrievalSetFromPairs(evalExamples))
 */
export function retrievalSetFromPairs(examples: readonly { texts: readonly string[] }[]): RetrievalSet {
  const ids = new Map<string, string>();
  const id = (t: string): string => ids.get(t) ?? (ids.set(t, `d${ids.size}`), `d${ids.size - 1}`);
  const qrels: Record<string, string[]> = {};
  examples.forEach((e, i) => {
    qrels[`q${i}`] = [id(e.texts[1])];
    e.texts.slice(2).forEach(id);
  });
  return {
    queries: Object.fromEntries(examples.map((e, i) => [`q${i}`, e.texts[0]])),
    corpus: Object.fromEntries([...ids].map(([t, d]) => [d, t])),
    qrels,
  };
}
