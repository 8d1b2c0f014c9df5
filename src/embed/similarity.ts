// Similarities between sentence embeddings, composed from primitive ops so autograd differentiates
// them: L2 normalisation (torch.nn.functional.normalize), the cosine matrix, row-wise cosine and
// AnglE's angle similarity (sentence-transformers util.pairwise_angle_sim, arXiv 2309.12871).
import { add, clamp, div, mul, sub, unary } from '../ops/elementwise.js';
import { chunk } from '../ops/indexing.js';
import { matmul } from '../ops/matmul.js';
import { sum } from '../ops/reduce.js';
import { transpose } from '../ops/view.js';
import { shapeStr } from '../tensor/layout.js';
import type { Tensor } from '../tensor/tensor.js';

/**
 * x / max(||x||_2, eps) over the last dim, as F.normalize(x, p=2, dim=-1).
 * @example const unit = l2Normalize(embeddings) // [N, D], every row of length 1
 */
export function l2Normalize(x: Tensor, eps = 1e-12): Tensor {
  return div(x, clamp(unary('sqrt', sum(mul(x, x), -1, true)), eps));
}

function checkRows(what: string, a: Tensor, b: Tensor, sameRows: boolean): void {
  if (a.ndim !== 2 || b.ndim !== 2 || a.shape[1] !== b.shape[1] || (sameRows && a.shape[0] !== b.shape[0]))
    throw new Error(`${what}: embeddings must be [N, D] and [${sameRows ? 'N' : 'M'}, D], got ${shapeStr(a.shape)} and ${shapeStr(b.shape)}`);
}

/**
 * cos(a_i, b_j) for every pair: [N, D] x [M, D] -> [N, M].
 * @example const scores = cosineMatrix(queries, passages)
 */
export function cosineMatrix(a: Tensor, b: Tensor): Tensor {
  checkRows('cosineMatrix', a, b, false);
  return matmul(l2Normalize(a), transpose(l2Normalize(b)));
}

/** cos(a_i, b_i) row by row: [N, D] x [N, D] -> [N]. */
export function pairwiseCosine(a: Tensor, b: Tensor): Tensor {
  checkRows('pairwiseCosine', a, b, true);
  return sum(mul(l2Normalize(a), l2Normalize(b)), -1);
}

/** ||a_i - b_i||_2 row by row ([N] ); the square is clamped at 1e-12 so the gradient stays finite at a_i = b_i. */
export function pairwiseEuclidean(a: Tensor, b: Tensor): Tensor {
  checkRows('pairwiseEuclidean', a, b, true);
  const d = sub(a, b);
  return unary('sqrt', clamp(sum(mul(d, d), -1), 1e-12));
}

/**
 * AnglE's similarity: each embedding's halves are the real and imaginary parts of a complex vector
 * z; the score is |sum(re + im)| of (z_a / z_b) scaled by |z_b| / |z_a| (util.pairwise_angle_sim).
 * [N, D] x [N, D] -> [N]; D must be even.
 */
export function pairwiseAngle(x: Tensor, y: Tensor): Tensor {
  checkRows('pairwiseAngle', x, y, true);
  if (x.shape[1] % 2 !== 0) throw new Error(`pairwiseAngle: the embedding dim must be even (real and imaginary halves), got ${x.shape[1]}`);
  const [a, b] = chunk(x, 2, 1);
  const [c, d] = chunk(y, 2, 1);
  const z = sum(add(mul(c, c), mul(d, d)), 1, true); // |z_y|^2
  const re = div(add(mul(a, c), mul(b, d)), z);
  const im = div(sub(mul(b, c), mul(a, d)), z);
  const dz = unary('sqrt', sum(add(mul(a, a), mul(b, b)), 1, true));
  const dw = unary('sqrt', z);
  const ratio = div(dz, dw);
  return unary('abs', sum(add(div(re, ratio), div(im, ratio)), 1));
}
