// groupedLinear (the grouped GEMM of MoE layers) against what it replaces: a linear per group
// over its rows (groupedLinearComposite), central differences in float64 on the reference
// backend, and the native matmulList kernel against the float64 reference on odd row counts
// (1, 7, 33, 257 rows) with groups that get no rows at all.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { assertClose, gradcheck, hasCpu, like, refLeaf, seededTensor } from '../helpers.js';

k.setDefaultBackend('ref');

/** Offsets of groups with the given row counts. */
const offsetsOf = (counts: number[]): number[] => counts.reduce((o, c) => [...o, o[o.length - 1] + c], [0]);

describe('groupedLinear on the reference backend (float64)', () => {
  test('equals a linear per group, forward and every gradient (an empty group gets a zero weight gradient)', () => {
    k.tidy(() => {
      const offsets = offsetsOf([2, 0, 3, 1]);
      const run = (f: typeof k.groupedLinear) => {
        const x = refLeaf([6, 5], 1);
        const ws = [0, 1, 2, 3].map((g) => refLeaf([4, 5], 10 + g));
        const y = f(x, ws, offsets);
        y.mul(refLeaf([6, 4], 77)).sum().backward();
        return { y, gx: x.grad!, gws: ws.map((w) => w.grad) };
      };
      const a = run(k.groupedLinear);
      const b = run(k.groupedLinearComposite);
      assertClose(a.y, b.y, { atol: 1e-12, rtol: 1e-12, what: 'forward' });
      assertClose(a.gx, b.gx, { atol: 1e-12, rtol: 1e-12, what: 'dx' });
      for (const g of [0, 2, 3]) assertClose(a.gws[g]!, b.gws[g]!, { atol: 1e-12, rtol: 1e-12, what: `dW${g}` });
      assert.deepEqual(a.gws[1]!.toArray(), new Array(4).fill(new Array(5).fill(0)));
    });
  });

  test('finite differences for x and every weight', () => {
    const offsets = offsetsOf([1, 3, 0, 2]);
    const x = refLeaf([6, 3], 2);
    const ws = [0, 1, 2, 3].map((g) => refLeaf([2, 3], 20 + g));
    gradcheck((xx, ...w) => k.groupedLinear(xx, w, offsets), [x, ...ws], { what: 'groupedLinear' });
  });

  test('two weight sets in one pass equal two separate calls', () => {
    k.tidy(() => {
      const offsets = offsetsOf([3, 1, 2]);
      const x = refLeaf([6, 4], 3);
      const gate = [0, 1, 2].map((g) => refLeaf([5, 4], 30 + g));
      const up = [0, 1, 2].map((g) => refLeaf([5, 4], 40 + g));
      gradcheck((xx, ...w) => k.mul(...(k.groupedLinears(xx, [w.slice(0, 3), w.slice(3)], offsets) as [k.Tensor, k.Tensor])), [x, ...gate, ...up], { what: 'gate*up' });
      const [g1, u1] = k.groupedLinears(x, [gate, up], offsets);
      assertClose(g1, k.groupedLinear(x, gate, offsets), { atol: 0, rtol: 0, what: 'gate' });
      assertClose(u1, k.groupedLinear(x, up, offsets), { atol: 0, rtol: 0, what: 'up' });
    });
  });

  test('bad offsets and weights are named', () => {
    const x = refLeaf([4, 3], 1);
    const w = [refLeaf([2, 3], 2), refLeaf([2, 3], 3)];
    assert.throws(() => k.groupedLinear(x, w, [0, 2, 5]), /offsets must run from 0 to the 4 rows of x, got \[0, 2, 5\]/);
    assert.throws(() => k.groupedLinear(x, w, [0, 1, 3, 4]), /set 0 has 2 weights for 3 groups/);
    assert.throws(() => k.groupedLinear(x, w, [0, 5, 4]), /offsets must be non-decreasing integers, got \[0, 5, 4\]/);
    assert.throws(() => k.groupedLinear(x, [w[0], refLeaf([2, 4], 4)], [0, 2, 4]), /weight 1 of set 0 must be \[2, 3\] \(out, in\), got \[2, 4\]/);
  });
});

describe('groupedLinear on the cpu backend (native matmulList) vs the float64 reference', { skip: hasCpu() ? false : 'cpu addon not built' }, () => {
  for (const rows of [1, 7, 33, 257])
    test(`${rows} rows over 5 groups, some empty: forward, dx and dW`, () => {
      k.tidy(() => {
        // rows spread unevenly: group 1 and 3 get none, group 4 the remainder
        const counts = [Math.ceil(rows / 3), 0, Math.floor(rows / 3), 0, 0];
        counts[4] = rows - counts[0] - counts[2];
        const offsets = offsetsOf(counts);
        const [K, O] = [37, 19];
        const x64 = seededTensor([rows, K], 'float64', 'ref', 5);
        const w64 = [0, 1, 2, 3, 4].map((g) => seededTensor([O, K], 'float64', 'ref', 50 + g));
        const dy64 = seededTensor([rows, O], 'float64', 'ref', 99);
        const grads = (backend: k.BackendName, dtype: k.DType) => {
          const x = like(x64, backend, dtype).requiresGrad_();
          const ws = w64.map((w) => like(w, backend, dtype).requiresGrad_());
          const y = k.groupedLinear(x, ws, offsets);
          y.mul(like(dy64, backend, dtype)).sum().backward();
          return { y, gx: x.grad!, gws: ws.map((w) => w.grad!) };
        };
        const want = grads('ref', 'float64');
        const got = grads('cpu', 'float32');
        const tol = { atol: 1e-4, rtol: 1e-4 };
        assertClose(got.y, want.y, { ...tol, what: 'forward' });
        assertClose(got.gx, want.gx, { ...tol, what: 'dx' });
        got.gws.forEach((g, i) => assertClose(g, want.gws[i], { ...tol, what: `dW${i}` }));
      });
    });

  test('matmulList rejects mismatched shapes with the product index', () => {
    k.tidy(() => {
      const cpu = k.getBackend('cpu');
      const [a, b, out] = [k.zeros([2, 3], { backend: 'cpu' }), k.zeros([4, 5], { backend: 'cpu' }), k.zeros([2, 5], { backend: 'cpu' })];
      assert.throws(() => cpu.kernels.matmulList!([{ a, b: a.t(), out: k.zeros([2, 2], { backend: 'cpu' }) }, { a, b, out }], false), /product 1: matmul: inner sizes differ/);
    });
  });
});
