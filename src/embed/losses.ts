// Contrastive losses over sentence embeddings, as sentence-transformers defines them (losses/*.py),
// each composed from autograd ops: multiple-negatives ranking (InfoNCE with in-batch and hard
// negatives, symmetric option, fixed or learnable scale, duplicate texts never counted as
// negatives), triplet, CoSENT, AnglE and the contrastive loss of labelled pairs.
import { arange, full, tensor } from '../ops/creation.js';
import { add, div, mul, sub, unary, where } from '../ops/elementwise.js';
import { cat } from '../ops/indexing.js';
import { crossEntropy } from '../ops/loss.js';
import { logsumexp, mean } from '../ops/reduce.js';
import { narrow, reshape } from '../ops/view.js';
import { shapeStr } from '../tensor/layout.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { cosineMatrix, pairwiseAngle, pairwiseCosine, pairwiseEuclidean } from './similarity.js';

/** A score far below any scaled cosine: exp() of it is 0, so a masked candidate takes no probability. */
const MASKED = -1e9;

export interface MnrlOptions {
  /** multiplies the cosine scores (1 / temperature; default 20 as sentence-transformers); a scalar Tensor (exp of a learnable log-scale) trains it */
  scale?: number | Tensor;
  /** also rank the anchors for each positive (MultipleNegativesSymmetricRankingLoss): the mean of both directions */
  symmetric?: boolean;
  /**
   * a key per row for its positive text (equal keys = equal texts) and per hard negative
   * (negativeKeys[k][i] for negatives[k] row i): a candidate whose key equals row i's positive key
   * is row i's positive again, so it is masked out of row i's negatives (never counted as one)
   */
  positiveKeys?: readonly string[];
  negativeKeys?: readonly (readonly string[])[];
  /** a key per anchor text: with symmetric, another row's identical anchor is masked out of the reverse direction */
  anchorKeys?: readonly string[];
}

/** [rows, cols] bool mask: true where column j's key equals row i's own key but j is not row i's own column i. */
function duplicateMask(rowKeys: readonly string[], colKeys: readonly string[], backend: string): Tensor | null {
  const m = new Uint8Array(rowKeys.length * colKeys.length);
  let any = false;
  rowKeys.forEach((key, i) => colKeys.forEach((c, j) => {
    if (j !== i && c === key) (m[i * colKeys.length + j] = 1), (any = true);
  }));
  return any ? tensor(m, { shape: [rowKeys.length, colKeys.length], dtype: 'bool', backend }) : null;
}

/** Cross-entropy of scale * cos(rows, cols) with row i's target column i, masked columns excluded. */
function rankingLoss(rows: Tensor, cols: Tensor, scale: number | Tensor, mask: Tensor | null): Tensor {
  const B = rows.shape[0];
  const scores = mul(cosineMatrix(rows, cols), scale); // [B, N]
  const logits = mask ? where(mask, MASKED, scores) : scores;
  return crossEntropy(logits, arange(B, undefined, 1, { dtype: 'int64', backend: rows.backendName }));
}

function checkKeys(what: string, keys: readonly unknown[] | undefined, n: number): void {
  if (keys && keys.length !== n) throw new Error(`mnrlLoss: ${what} has ${keys.length} keys for ${n} rows`);
}

/**
 * Multiple-negatives ranking loss (InfoNCE): row i's anchor must pick its positive among every
 * positive of the batch (in-batch negatives) and every hard negative, by softmax over
 * scale * cosine. anchors, positives and each negatives[k] are [B, D].
 * @example const loss = mnrlLoss(a, p, [hardNeg], { scale: 20, positiveKeys: texts })
 */
export function mnrlLoss(anchors: Tensor, positives: Tensor, negatives: readonly Tensor[] = [], opts: MnrlOptions = {}): Tensor {
  const B = anchors.shape[0];
  for (const [i, t] of [positives, ...negatives].entries())
    if (t.ndim !== 2 || t.shape[0] !== B || t.shape[1] !== anchors.shape[1])
      throw new Error(`mnrlLoss: ${i === 0 ? 'positives' : `negatives[${i - 1}]`} is ${shapeStr(t.shape)}, the anchors ${shapeStr(anchors.shape)}`);
  checkKeys('positiveKeys', opts.positiveKeys, B);
  checkKeys('anchorKeys', opts.anchorKeys, B);
  if (opts.negativeKeys && opts.negativeKeys.length !== negatives.length) throw new Error(`mnrlLoss: negativeKeys has ${opts.negativeKeys.length} columns for ${negatives.length} negatives`);
  opts.negativeKeys?.forEach((k, i) => checkKeys(`negativeKeys[${i}]`, k, B));
  const scale = opts.scale ?? 20;
  return tidy(() => {
    const candidates = negatives.length ? cat([positives, ...negatives], 0) : positives; // [B (1 + K), D]
    const colKeys = opts.positiveKeys ? [...opts.positiveKeys, ...(opts.negativeKeys ?? negatives.map(() => new Array<string>(B).fill('\u0000negative'))).flat()] : null;
    const mask = opts.positiveKeys && colKeys ? duplicateMask(opts.positiveKeys, colKeys, anchors.backendName) : null;
    const forward = rankingLoss(anchors, candidates, scale, mask);
    if (!opts.symmetric) return forward;
    const back = rankingLoss(positives, anchors, scale, opts.anchorKeys ? duplicateMask(opts.anchorKeys, opts.anchorKeys, anchors.backendName) : null);
    return div(add(forward, back), 2);
  });
}

export interface TripletOptions {
  /** 'euclidean' (default, as sentence-transformers' TripletLoss) or 'cosine' (1 - cos) */
  distance?: 'euclidean' | 'cosine';
  /** default 5 (sentence-transformers' default) */
  margin?: number;
}

/**
 * mean(relu(d(a, p) - d(a, n) + margin)) (TripletLoss, FaceNet). [B, D] each.
 * @example tripletLoss(a, p, n, { distance: 'cosine', margin: 0.3 })
 */
export function tripletLoss(anchors: Tensor, positives: Tensor, negatives: Tensor, opts: TripletOptions = {}): Tensor {
  const { distance = 'euclidean', margin = 5 } = opts;
  return tidy(() => {
    const d = (x: Tensor, y: Tensor): Tensor => (distance === 'cosine' ? sub(1, pairwiseCosine(x, y)) : pairwiseEuclidean(x, y));
    return mean(unary('relu', add(sub(d(anchors, positives), d(anchors, negatives)), margin)));
  });
}

function checkScores(what: string, a: Tensor, scores: readonly number[]): void {
  if (scores.length !== a.shape[0]) throw new Error(`${what}: ${scores.length} scores for ${a.shape[0]} pairs`);
  scores.forEach((s, i) => {
    if (!Number.isFinite(s)) throw new Error(`${what}: score ${i} is ${s}, not a finite number`);
  });
}

/** log(1 + sum over pairs (i, j) with y_i < y_j of exp(s_i - s_j)): the ranking loss of CoSENT and AnglE. */
function pairRankingLoss(sims: Tensor, scale: number, labels: readonly number[]): Tensor {
  const n = labels.length;
  const s = mul(sims, scale);
  const diff = sub(reshape(s, [n, 1]), reshape(s, [1, n])); // [i, j] = s_i - s_j
  const lower = new Uint8Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) lower[i * n + j] = labels[i] < labels[j] ? 0 : 1;
  const masked = where(tensor(lower, { shape: [n, n], dtype: 'bool', backend: sims.backendName }), MASKED, diff);
  const zero = full([1], 0, { dtype: sims.dtype, backend: sims.backendName });
  return logsumexp(cat([zero, reshape(masked, [n * n])], 0), 0);
}

/**
 * CoSENT (arXiv 2022, Su): pairs with a higher gold score must get a higher cosine; scale 20 as sentence-transformers.
 * @example cosentLoss(u, v, [0.9, 0.1, 0.5])
 */
export function cosentLoss(u: Tensor, v: Tensor, scores: readonly number[], opts: { scale?: number } = {}): Tensor {
  checkScores('cosentLoss', u, scores);
  return tidy(() => pairRankingLoss(pairwiseCosine(u, v), opts.scale ?? 20, scores));
}

/** AnglE (arXiv 2309.12871): CoSENT's ranking over the angle similarity (pairwiseAngle); scale 20. */
export function angleLoss(u: Tensor, v: Tensor, scores: readonly number[], opts: { scale?: number } = {}): Tensor {
  checkScores('angleLoss', u, scores);
  return tidy(() => pairRankingLoss(pairwiseAngle(u, v), opts.scale ?? 20, scores));
}

/**
 * Contrastive loss of labelled pairs (Hadsell et al. 2006; sentence-transformers ContrastiveLoss):
 * mean(0.5 (y d^2 + (1 - y) relu(margin - d)^2)) with d = 1 - cos, margin 0.5, labels 1 (similar) or 0.
 * @example contrastiveLoss(u, v, [1, 0, 1])
 */
export function contrastiveLoss(u: Tensor, v: Tensor, labels: readonly number[], opts: { margin?: number } = {}): Tensor {
  checkScores('contrastiveLoss', u, labels);
  labels.forEach((y, i) => {
    if (y !== 0 && y !== 1) throw new Error(`contrastiveLoss: label ${i} is ${y}; labels must be 0 (dissimilar) or 1 (similar)`);
  });
  const margin = opts.margin ?? 0.5;
  return tidy(() => {
    const d = sub(1, pairwiseCosine(u, v));
    const y = tensor(labels, { dtype: d.dtype, backend: d.backendName });
    const far = unary('relu', sub(margin, d));
    return mean(mul(add(mul(y, mul(d, d)), mul(sub(1, y), mul(far, far))), 0.5));
  });
}

/**
 * Matryoshka representation learning (arXiv 2205.13147; MatryoshkaLoss): the weighted sum of a
 * loss over the embeddings cut to each of several leading dimensions, so every prefix embeds alone.
 * @example matryoshkaLoss([a, p], [64, 32, 16], (e) => mnrlLoss(e[0], e[1]))
 */
export function matryoshkaLoss(embeddings: readonly Tensor[], dims: readonly number[], loss: (e: Tensor[]) => Tensor, weights?: readonly number[]): Tensor {
  const D = embeddings[0]?.shape[1] ?? 0;
  if (dims.length === 0) throw new Error('matryoshkaLoss: no dims');
  for (const d of dims) if (!Number.isInteger(d) || d < 1 || d > D) throw new Error(`matryoshkaLoss: dim ${d} must be an integer in [1, ${D}] (the embedding width)`);
  if (weights && weights.length !== dims.length) throw new Error(`matryoshkaLoss: ${weights.length} weights for ${dims.length} dims`);
  return tidy(() => dims.map((d, i) => mul(loss(embeddings.map((e) => narrow(e, 1, 0, d))), weights?.[i] ?? 1)).reduce((s, l) => add(s, l)));
}
