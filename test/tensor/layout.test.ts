// Views are layouts over shared storage: reshape follows PyTorch's view rule, and every view
// reads the elements its strides say (checked against values computed by hand).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { Layout } from '../../src/tensor/layout.js';

k.setDefaultBackend('ref');
const grid = (): k.Tensor => k.arange(24).reshape([2, 3, 4]);

describe('layout', () => {
  test('reshape of contiguous is a view; of a transpose it copies exactly when needed', () => {
    const l = new Layout([2, 3, 4]);
    assert.deepEqual(l.reshape([6, 4])!.strides, [4, 1]);
    const t = l.permute([1, 0, 2]); // [3, 2, 4], strides [4, 12, 1]
    assert.deepEqual(t.reshape([3, 8]), null, 'merging permuted dims needs a copy');
    assert.deepEqual(t.reshape([3, 2, 2, 2])!.strides, [4, 12, 2, 1], 'splitting the contiguous last dim is a view');
    assert.deepEqual(new Layout([4, 1, 3], [3, 99, 1]).reshape([12])!.strides, [1], 'size-1 dims are free');
  });

  test('views read the right elements', () => {
    k.tidy(() => {
      const g = grid();
      assert.deepEqual(g.transpose(0, 2).toArray(), [[[0, 12], [4, 16], [8, 20]], [[1, 13], [5, 17], [9, 21]], [[2, 14], [6, 18], [10, 22]], [[3, 15], [7, 19], [11, 23]]]);
      assert.deepEqual(g.narrow(2, 1, 2).select(0, 1).toArray(), [[13, 14], [17, 18], [21, 22]]);
      assert.deepEqual(g.slice(2, 0, 4, 3).squeeze().toArray() as number[][], [[[0, 3], [4, 7], [8, 11]], [[12, 15], [16, 19], [20, 23]]]);
      assert.deepEqual(k.tensor([[1], [2]]).expand([2, 3]).toArray(), [[1, 1, 1], [2, 2, 2]]);
      assert.deepEqual(g.transpose(1, 2).reshape([2, 12]).toArray(), [
        [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11],
        [12, 16, 20, 13, 17, 21, 14, 18, 22, 15, 19, 23],
      ]);
      assert.deepEqual(g.unsqueeze(1).shape, [2, 1, 3, 4]);
      assert.deepEqual(g.flatten(1).shape, [2, 12]);
      assert.deepEqual(g.reshape([-1, 6]).shape, [4, 6]);
    });
  });

  test('a view shares storage (no copy)', () => {
    k.tidy(() => {
      const g = grid();
      const v = g.transpose(0, 1).narrow(0, 1, 1);
      assert.equal(v.storage, g.storage);
      assert.equal(v.isContiguous(), false);
      assert.equal(v.contiguous().storage === g.storage, false);
    });
  });

  test('bad shapes and dims name the op', () => {
    k.tidy(() => {
      const g = grid();
      assert.throws(() => g.reshape([5, 5]), /reshape: shape \[5, 5\] is invalid for 24 elements/);
      assert.throws(() => g.transpose(0, 1).view([24]), /view: .* use reshape/);
      assert.throws(() => g.permute([0, 0, 1]), /permute/);
      assert.throws(() => g.narrow(1, 2, 2), /narrow: range \[2, 4\) out of bounds for dim 1 of size 3/);
      assert.throws(() => g.expand([2, 5, 4]), /expand: cannot expand \[2, 3, 4\] to \[2, 5, 4\]/);
      assert.throws(() => g.sum(3), /sum: dim 3 out of range for a 3-d tensor/);
    });
  });
});
