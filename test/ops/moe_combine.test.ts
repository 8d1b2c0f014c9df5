// moeCombine (the weighted scatter ending a MoE layer) against the three ops it replaces
// (moeCombineComposite: index_add of y * w), central differences in float64 on the reference
// backend, and the native kernel against the float64 reference on 1, 7, 33 and 257 slots (tokens
// hit by two slots, tokens hit by none), forward, dy and dw, in float32 and float64.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { assertClose, gradcheck, hasCpu, like, refLeaf, seededTensor } from '../helpers.js';

k.setDefaultBackend('ref');

/** Slot s goes to token (s * 5) mod rows with rows = ceil(S / 2) + 1: repeats, and the last rows often get none. */
function tokens(S: number): { token: number[]; rows: number } {
  const rows = Math.ceil(S / 2) + 1;
  return { token: Array.from({ length: S }, (_, s) => (s * 5) % rows), rows };
}

describe('moeCombine on the reference backend (float64)', () => {
  test('equals index_add(zeros, 0, token, y * w[:, None]), forward and gradients', () => {
    k.tidy(() => {
      const token = k.tensor([2, 0, 2, 3, 0], { dtype: 'int64' });
      const run = (f: typeof k.moeCombine) => {
        const y = refLeaf([5, 4], 1);
        const w = refLeaf([5], 2);
        const out = f(y, token, w, 5); // row 1 and 4 get no slot: zeros
        out.mul(refLeaf([5, 4], 3)).sum().backward();
        return { out, gy: y.grad!, gw: w.grad! };
      };
      const [a, b] = [run(k.moeCombine), run(k.moeCombineComposite)];
      for (const key of ['out', 'gy', 'gw'] as const) assertClose(a[key], b[key], { atol: 1e-12, rtol: 1e-12, what: key });
      assert.deepEqual((a.out.toArray() as number[][])[1], [0, 0, 0, 0]);
    });
  });

  test('finite differences for y and w', () => {
    const token = k.tensor([1, 1, 0, 3], { dtype: 'int64' });
    gradcheck((y, w) => k.moeCombine(y, token, w, 4), [refLeaf([4, 3], 4), refLeaf([4], 5)], { what: 'moeCombine' });
  });

  test('bad shapes, dtypes and tokens are named', () => {
    const y = refLeaf([3, 2], 1);
    const w = refLeaf([3], 2);
    const token = k.tensor([0, 1, 2], { dtype: 'int64' });
    assert.throws(() => k.moeCombine(y, token, refLeaf([2], 3), 3), /moeCombine: need y \[S, D\], token \[S\], w \[S\]; got \[3, 2\], \[3\], \[2\]/);
    assert.throws(() => k.moeCombine(y, k.tensor([0, 1, 2], { dtype: 'int32' }), w, 3), /token must be int64, got int32/);
    assert.throws(() => k.moeCombine(y, token, w, 2), /moeCombine: index 2 is out of range for a dimension of size 2/);
  });
});

describe('moeCombine on the cpu backend (native) vs the float64 reference', { skip: hasCpu() ? false : 'cpu addon not built' }, () => {
  for (const dtype of ['float32', 'float64'] as const)
    for (const S of [1, 7, 33, 257])
      test(`${dtype}: ${S} slots, D 37: forward, dy, dw`, () => {
        k.tidy(() => {
          const { token, rows } = tokens(S);
          const y64 = seededTensor([S, 37], 'float64', 'ref', 11);
          const w64 = seededTensor([S], 'float64', 'ref', 12);
          const g64 = seededTensor([rows, 37], 'float64', 'ref', 13);
          const run = (backend: k.BackendName, dt: k.DType) => {
            const y = like(y64, backend, dt).requiresGrad_();
            const w = like(w64, backend, dt).requiresGrad_();
            const out = k.moeCombine(y, k.tensor(token, { dtype: 'int64', backend }), w, rows);
            out.mul(like(g64, backend, dt)).sum().backward();
            return { out, gy: y.grad!, gw: w.grad! };
          };
          const want = run('ref', 'float64');
          const got = run('cpu', dtype);
          // float32: each out element sums at most 2 products, each dw a 37-term dot product
          const tol = dtype === 'float32' ? { atol: 1e-5, rtol: 1e-5 } : { atol: 1e-13, rtol: 1e-13 };
          for (const key of ['out', 'gy', 'gw'] as const) assertClose(got[key].to('float64'), want[key], { ...tol, what: key });
        });
      });

  test('the kernel names an out-of-range token and its slot before writing', () => {
    k.tidy(() => {
      const y = k.ones([2, 3], { backend: 'cpu' });
      const w = k.ones([2], { backend: 'cpu' });
      assert.throws(() => k.moeCombine(y, k.tensor([0, 5], { dtype: 'int64', backend: 'cpu' }), w, 2), /moe_combine: token 5 at slot 1 is out of range for 2 rows/);
    });
  });
});
