// tensor() with an integer dtype takes only values that dtype holds exactly: fractions, NaN,
// Infinity and out-of-range values throw, naming the dtype, the first bad value and its flat
// index (they used to be truncated, wrapped or turned into a RangeError from BigInt()).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';

const backends = ['ref', ...(k.hasBackend('cpu') ? ['cpu'] : [])];

for (const backend of backends)
  describe(`tensor() integer values (${backend})`, () => {
    const make = (data: Parameters<typeof k.tensor>[0], dtype: k.DType) => () => k.tensor(data, { dtype, backend }).dispose();

    test('int32: fractions, NaN, Infinity and values outside [-2^31, 2^31 - 1] throw', () => {
      assert.throws(make([[1, 2], [3, 2.5]], 'int32'), /^Error: tensor: 2\.5 at flat index 3 is not a valid int32 \(expected an integer in \[-2147483648, 2147483647\]\)/);
      assert.throws(make([0, NaN], 'int32'), /tensor: NaN at flat index 1 is not a valid int32/);
      assert.throws(make([-Infinity], 'int32'), /tensor: -Infinity at flat index 0 is not a valid int32/);
      assert.throws(make([2 ** 31], 'int32'), /tensor: 2147483648 at flat index 0 is not a valid int32/);
      assert.throws(make([-(2 ** 31) - 1], 'int32'), /tensor: -2147483649 at flat index 0/);
      assert.throws(make(new Float64Array([7, 0.5]), 'int32'), /tensor: 0\.5 at flat index 1 is not a valid int32/);
      assert.throws(make([1n, 2n ** 31n], 'int32'), /tensor: 2147483648n at flat index 1 is not a valid int32/);
      assert.deepEqual(k.tensor([-(2 ** 31), 2 ** 31 - 1, -0], { dtype: 'int32', backend }).toArray(), [-(2 ** 31), 2 ** 31 - 1, 0]);
    });

    test('int64: numbers must be safe integers, bigints must fit 64 bits', () => {
      assert.throws(make([1, 2, 3.25], 'int64'), /tensor: 3\.25 at flat index 2 is not a valid int64/);
      assert.throws(make([NaN], 'int64'), /tensor: NaN at flat index 0 is not a valid int64/);
      assert.throws(make([[0], [Infinity]], 'int64'), /tensor: Infinity at flat index 1 is not a valid int64/);
      assert.throws(make([2 ** 53], 'int64'), /tensor: 9007199254740992 at flat index 0 is not a valid int64 .*pass a bigint/);
      assert.throws(make([2n ** 63n], 'int64'), /tensor: 9223372036854775808n at flat index 0 is not a valid int64/);
      assert.throws(make(new Float64Array([1, -0.5]), 'int64'), /tensor: -0\.5 at flat index 1 is not a valid int64/);
      const big = k.tensor([-(2n ** 63n), 2n ** 63n - 1n], { backend });
      assert.deepEqual([...(big.toTypedArray() as BigInt64Array)], [-(2n ** 63n), 2n ** 63n - 1n]);
      assert.deepEqual(k.tensor([2 ** 53 - 1, -(2 ** 53 - 1), true], { dtype: 'int64', backend }).toArray(), [2 ** 53 - 1, -(2 ** 53 - 1), 1]);
    });

    test('int8 and uint8: their ranges', () => {
      assert.throws(make([127, 128], 'int8'), /tensor: 128 at flat index 1 is not a valid int8 \(expected an integer in \[-128, 127\]\)/);
      assert.throws(make([-129], 'int8'), /tensor: -129 at flat index 0 is not a valid int8/);
      assert.throws(make([0, 255, 256], 'uint8'), /tensor: 256 at flat index 2 is not a valid uint8 \(expected an integer in \[0, 255\]\)/);
      assert.throws(make([-1], 'uint8'), /tensor: -1 at flat index 0 is not a valid uint8/);
      assert.throws(make(new Uint8Array([1, 200]), 'int8'), /tensor: 200 at flat index 1 is not a valid int8/);
      assert.deepEqual(k.tensor([-128, 127], { dtype: 'int8', backend }).toArray(), [-128, 127]);
      assert.deepEqual(k.tensor([0, 255], { dtype: 'uint8', backend }).toArray(), [0, 255]);
    });

    test('float and bool dtypes take any number as before', () => {
      assert.deepEqual(k.tensor([0.5, NaN, 3], { dtype: 'bool', backend }).toArray(), [1, 0, 1]);
      assert.deepEqual(k.tensor([1.5, -Infinity], { dtype: 'float64', backend }).toArray(), [1.5, -Infinity]);
    });
  });
