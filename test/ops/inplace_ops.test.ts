// The in-place write ops (src/ops/inplace.ts) that caches and initialisers use instead of a
// backend's kernels: copy_ into a view (broadcast and dtype conversion), fill_, copyWhere_ (the
// static cache's slot select); values checked element by element against plain arrays, on ref and
// cpu; writing into a tensor that requires grad is refused.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { hasCpu } from '../helpers.js';

for (const backend of ['ref', 'cpu'] as const)
  test(`copy_, fill_ and copyWhere_ write in place (${backend})`, { skip: backend === 'cpu' && !hasCpu() && 'native addon not built' }, () => {
    const buf = k.zeros([2, 3, 4], { backend });
    // a [2, 1, 4] float64 source broadcast into the middle row of every batch (a narrow view)
    k.copy_(buf.narrow(1, 1, 1), k.tensor([[[1, 2, 3, 4]], [[5, 6, 7, 8]]], { dtype: 'float64', backend }));
    assert.deepEqual(buf.toArray(), [
      [[0, 0, 0, 0], [1, 2, 3, 4], [0, 0, 0, 0]],
      [[0, 0, 0, 0], [5, 6, 7, 8], [0, 0, 0, 0]],
    ]);
    k.fill_(buf.narrow(2, 3, 1), 9); // a strided column
    assert.deepEqual((buf.toArray() as number[][][])[1], [[0, 0, 0, 9], [5, 6, 7, 9], [0, 0, 0, 9]]);
    // slot 2 of the length dim takes the new row, every other element keeps its value
    const slot = k.tensor([false, false, true], { backend }).reshape([1, 3, 1]);
    k.copyWhere_(buf, slot, k.full([2, 1, 4], -1, { backend }));
    assert.deepEqual((buf.toArray() as number[][][])[0], [[0, 0, 0, 9], [1, 2, 3, 9], [-1, -1, -1, -1]]);
    assert.throws(() => k.copy_(buf, k.zeros([5], { backend })), /\[5\] does not broadcast to the destination \[2, 3, 4\]/);
    assert.throws(() => k.copyWhere_(buf, k.zeros([1, 3, 1], { backend }), buf), /cond must be bool/);
    const leaf = k.zeros([3], { backend }).requiresGrad_();
    assert.throws(() => k.fill_(leaf, 1), /not differentiable/);
    k.noGrad(() => k.fill_(leaf, 1));
    assert.deepEqual(leaf.toArray(), [1, 1, 1]);
  });
