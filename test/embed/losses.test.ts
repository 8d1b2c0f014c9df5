// Each contrastive loss against its formula written out in plain float64 JavaScript on fixed
// embeddings (the formulas of sentence-transformers' losses/*.py), and its gradient against
// central differences (gradcheck on the reference backend in float64).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { gradcheck, refLeaf, seeded } from '../helpers.js';

const E = k.embeddings;
const rows = (t: k.Tensor): number[][] => {
  const v = t.toTypedArray() as Float64Array;
  const [n, d] = t.shape;
  return Array.from({ length: n }, (_, i) => Array.from(v.subarray(i * d, (i + 1) * d)));
};
const dot = (a: number[], b: number[]): number => a.reduce((s, x, i) => s + x * b[i], 0);
const cos = (a: number[], b: number[]): number => dot(a, b) / Math.sqrt(dot(a, a) * dot(b, b));
const lse = (xs: number[]): number => {
  const m = Math.max(...xs);
  return m + Math.log(xs.reduce((s, x) => s + Math.exp(x - m), 0));
};
const near = (got: number, want: number, what: string): void => assert.ok(Math.abs(got - want) <= 1e-10 + 1e-9 * Math.abs(want), `${what}: got ${got}, want ${want}`);

/** -1/B sum_i log softmax_j(scale cos(a_i, c_j))[i], columns j with skip(i, j) left out. */
function infoNce(a: number[][], c: number[][], scale: number, skip: (i: number, j: number) => boolean = () => false): number {
  return -a.reduce((s, ai, i) => {
    const logits = c.map((cj, j) => (skip(i, j) ? -Infinity : scale * cos(ai, cj))).filter((x) => x > -Infinity);
    return s + scale * cos(ai, c[i]) - lse(logits);
  }, 0) / a.length;
}

test('mnrl: in-batch and hard negatives, symmetric, learnable scale match the InfoNCE formula', () => {
  const [a, p, n1, n2] = [1, 2, 3, 4].map((s) => refLeaf([5, 6], s));
  const [A, P, N1, N2] = [a, p, n1, n2].map(rows);
  near(E.mnrlLoss(a, p).item(), infoNce(A, P, 20), 'in-batch');
  near(E.mnrlLoss(a, p, [n1, n2], { scale: 7 }).item(), infoNce(A, [...P, ...N1, ...N2], 7), 'two hard negatives');
  const sym = (infoNce(A, P, 20) + infoNce(P, A, 20)) / 2;
  near(E.mnrlLoss(a, p, [], { symmetric: true }).item(), sym, 'symmetric');
  const logScale = k.tensor([Math.log(12)], { dtype: 'float64', backend: 'ref', requiresGrad: true });
  const l = E.mnrlLoss(a, p, [], { scale: k.exp(logScale).reshape([]) });
  near(l.item(), infoNce(A, P, 12), 'learnable scale');
  l.backward();
  // d/d(log s) of the loss = s * dL/ds; dL/ds from a central difference of the formula
  const h = 1e-6;
  const dLds = (infoNce(A, P, 12 + h) - infoNce(A, P, 12 - h)) / (2 * h);
  near(logScale.grad!.item(), 12 * dLds, 'learnable scale gradient');
});

test('mnrl: a duplicate positive (or a hard negative equal to the positive) is never a negative', () => {
  const [a, p, n] = [1, 2, 3].map((s) => refLeaf([4, 5], s));
  const keys = ['x', 'y', 'x', 'z']; // rows 0 and 2 share their positive text
  const negKeys = [['q', 'y', 'r', 's']]; // row 1's hard negative is its own positive text
  const got = E.mnrlLoss(a, p, [n], { scale: 10, positiveKeys: keys, negativeKeys: negKeys }).item();
  const cols = [...keys, ...negKeys[0]];
  const want = infoNce(rows(a), [...rows(p), ...rows(n)], 10, (i, j) => j !== i && cols[j] === keys[i]);
  near(got, want, 'masked');
  // the masking changes the value: rows 0/2 and row 1 lose a competing column
  assert.ok(Math.abs(got - infoNce(rows(a), [...rows(p), ...rows(n)], 10)) > 1e-3, 'masking had no effect');
  gradcheck((x, y, z) => E.mnrlLoss(x, y, [z], { scale: 10, positiveKeys: keys, negativeKeys: negKeys, symmetric: true, anchorKeys: ['a', 'b', 'a', 'c'] }), [a, p, n], { what: 'masked symmetric mnrl' });
});

test('mnrl gradients by finite differences', () => {
  const [a, p, n] = [5, 6, 7].map((s) => refLeaf([3, 4], s));
  gradcheck((x, y, z) => E.mnrlLoss(x, y, [z], { scale: 5 }), [a, p, n], { what: 'mnrl' });
});

test('triplet (euclidean, cosine) matches relu(d(a,p) - d(a,n) + margin) and its gradient', () => {
  const [a, p, n] = [1, 2, 3].map((s) => refLeaf([6, 4], s));
  const [A, P, N] = [a, p, n].map(rows);
  const eu = (x: number[], y: number[]): number => Math.sqrt(x.reduce((s, v, i) => s + (v - y[i]) ** 2, 0));
  const want = (d: (x: number[], y: number[]) => number, m: number): number => A.reduce((s, ai, i) => s + Math.max(0, d(ai, P[i]) - d(ai, N[i]) + m), 0) / A.length;
  near(E.tripletLoss(a, p, n).item(), want(eu, 5), 'euclidean margin 5');
  const cd = (x: number[], y: number[]): number => 1 - cos(x, y);
  near(E.tripletLoss(a, p, n, { distance: 'cosine', margin: 0.3 }).item(), want(cd, 0.3), 'cosine margin 0.3');
  // margin 0.3 leaves some rows inactive (relu at 0), which the check must cover away from the kink
  assert.ok(A.some((ai, i) => cd(ai, P[i]) - cd(ai, N[i]) + 0.3 < -0.01), 'no inactive row');
  gradcheck((x, y, z) => E.tripletLoss(x, y, z, { distance: 'cosine', margin: 0.3 }), [a, p, n], { what: 'triplet cosine' });
  gradcheck((x, y, z) => E.tripletLoss(x, y, z, { margin: 1 }), [a, p, n], { what: 'triplet euclidean' });
});

/** log(1 + sum_{y_i < y_j} exp(scale (s_i - s_j))) */
function pairRanking(s: number[], y: number[], scale: number): number {
  const terms = [0];
  s.forEach((si, i) => s.forEach((sj, j) => y[i] < y[j] && terms.push(scale * (si - sj))));
  return lse(terms);
}

/** AnglE's |sum(re + im)| of z_x / z_y scaled by |z_y| / |z_x|, written with complex arithmetic. */
function angle(x: number[], y: number[]): number {
  const h = x.length / 2;
  let re = 0, im = 0;
  const nx = Math.sqrt(dot(x, x)), ny = Math.sqrt(dot(y, y));
  for (let k2 = 0; k2 < h; k2++) {
    const [a, b, c, d] = [x[k2], x[h + k2], y[k2], y[h + k2]];
    // (a + bi) / (c + di) = ((ac + bd) + (bc - ad) i) / |z_y|^2
    re += (a * c + b * d) / (ny * ny) / (nx / ny);
    im += (b * c - a * d) / (ny * ny) / (nx / ny);
  }
  return Math.abs(re + im);
}

test('CoSENT and AnglE match the pair-ranking formula; gradients by finite differences', () => {
  const [u, v] = [1, 2].map((s) => refLeaf([5, 6], s));
  const [U, V] = [u, v].map(rows);
  const y = [0.9, 0.1, 0.5, 0.5, 0.3];
  near(E.cosentLoss(u, v, y).item(), pairRanking(U.map((x, i) => cos(x, V[i])), y, 20), 'cosent');
  near(E.angleLoss(u, v, y).item(), pairRanking(U.map((x, i) => angle(x, V[i])), y, 20), 'angle');
  gradcheck((a, b) => E.cosentLoss(a, b, y, { scale: 3 }), [u, v], { what: 'cosent' });
  gradcheck((a, b) => E.angleLoss(a, b, y, { scale: 3 }), [u, v], { what: 'angle' });
});

test('contrastive loss of labelled pairs matches 0.5 (y d^2 + (1 - y) relu(m - d)^2)', () => {
  const [u, v] = [3, 4].map((s) => refLeaf([6, 5], s));
  const [U, V] = [u, v].map(rows);
  const y = [1, 0, 1, 0, 0, 1];
  const want = U.reduce((s, x, i) => {
    const d = 1 - cos(x, V[i]);
    return s + 0.5 * (y[i] * d * d + (1 - y[i]) * Math.max(0, 0.5 - d) ** 2);
  }, 0) / U.length;
  near(E.contrastiveLoss(u, v, y).item(), want, 'contrastive');
  assert.throws(() => E.contrastiveLoss(u, v, [1, 0, 2, 0, 0, 1]), /label 2 is 2/);
  gradcheck((a, b) => E.contrastiveLoss(a, b, y, { margin: 0.9 }), [u, v], { what: 'contrastive' });
});

test('bad shapes and keys are named', () => {
  const a = refLeaf([3, 4]);
  assert.throws(() => E.mnrlLoss(a, refLeaf([2, 4])), /positives is \[2, 4\]/);
  assert.throws(() => E.mnrlLoss(a, a, [], { positiveKeys: ['x'] }), /positiveKeys has 1 keys for 3 rows/);
  assert.throws(() => E.cosentLoss(a, a, [1, 2]), /2 scores for 3 pairs/);
  assert.throws(() => E.angleLoss(refLeaf([2, 3]), refLeaf([2, 3]), [1, 0]), /must be even/);
  void seeded;
});
