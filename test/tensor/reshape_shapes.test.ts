// reshape / view take sizes >= 0 and at most one -1 (torch.reshape's rules): other negative sizes,
// a second -1 and fractional sizes throw naming the requested and the input shape (a pair like
// [-2, -3] or [-1, -1] used to multiply out to the right count and give a negative-size layout).
// Zero-size inputs follow PyTorch: -1 next to a 0 is ambiguous and refused; elsewhere it infers.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';

describe('reshape / view requested shapes', () => {
  test('negative sizes other than one -1 throw, naming both shapes', () => {
    k.tidy(() => {
      const x = k.arange(6, undefined, 1, { backend: 'ref' }).reshape([2, 3]);
      assert.throws(() => x.reshape([-2, -3]), /^Error: reshape: shape \[-2, -3\] is invalid for 6 elements \(input \[2, 3\]\): size -2 at dim 0/);
      assert.throws(() => x.view([-1, -1]), /view: shape \[-1, -1\] is invalid for 6 elements \(input \[2, 3\]\): only one dimension can be -1/);
      assert.throws(() => x.reshape([-2, 3]), /reshape: shape \[-2, 3\] is invalid for 6 elements \(input \[2, 3\]\): size -2 at dim 0/);
      assert.throws(() => x.reshape([1.5, 4]), /reshape: shape \[1\.5, 4\] .* size 1\.5 at dim 0/);
      assert.throws(() => x.reshape([-1, 4]), /reshape: shape \[-1, 4\] is invalid for 6 elements \(input \[2, 3\]\)/);
      assert.throws(() => x.reshape([-1, 0]), /reshape: shape \[-1, 0\] is invalid for 6 elements .*-1 cannot be inferred/);
      assert.deepEqual(x.reshape([3, -1]).shape, [3, 2]);
      assert.deepEqual(x.t().reshape([-1]).toArray(), [0, 3, 1, 4, 2, 5]);
    });
  });

  test('zero-size inputs: -1 infers unless a 0 makes it ambiguous', () => {
    k.tidy(() => {
      const z = k.zeros([0, 3], { backend: 'ref' });
      assert.deepEqual(z.reshape([-1]).shape, [0]);
      assert.deepEqual(z.reshape([-1, 3]).shape, [0, 3]);
      assert.deepEqual(z.view([3, 0, 5]).shape, [3, 0, 5]);
      assert.throws(() => z.reshape([-1, 0]), /reshape: shape \[-1, 0\] is invalid for 0 elements \(input \[0, 3\]\): the -1 cannot be inferred next to a size-0 dim/);
      assert.throws(() => z.reshape([0, -1]), /-1 cannot be inferred/);
      assert.deepEqual(k.zeros([], { backend: 'ref' }).reshape([-1]).shape, [1]);
      assert.deepEqual(k.zeros([1], { backend: 'ref' }).reshape([]).shape, []);
    });
  });
});
