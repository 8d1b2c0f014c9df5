// Index tensors of gather / scatterAdd / indexSelect / indexAdd / embedding must lie in
// [0, size) on every backend: PyTorch refuses a negative id (IndexError) where the kernels used
// to wrap it Python-style, so a bad token id in model.forward fails loudly instead of reading the
// last rows. Each backend's kernel checks (ref: src/backend/ref/linalg.ts, cpu: native/indexing.cc,
// cuda: the device kernels, reported at the next host read). Python-style negative dims and view
// positions (select(-1), narrow, slice) keep working.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { crossEntropyComposite } from '../../src/ops/loss.js';
import { ALL_DEVICES, skipUnless } from '../devices.js';

for (const backend of ['ref', ...ALL_DEVICES] as const)
  describe(`index values out of [0, size) are refused (${backend})`, { skip: backend === 'ref' ? false : skipUnless(backend) }, () => {
    const x = (shape: number[]) => k.arange(shape.reduce((a, b) => a * b, 1), undefined, 1, { dtype: 'float32', backend }).reshape(shape);
    const idx = (v: number[] | number[][], dtype: 'int64' | 'int32' = 'int64') => k.tensor(v, { dtype, backend });
    // the device kernels report at the next host read
    const run = (f: () => k.Tensor) => () => f().toArray();
    const bad = (op: string, v: number, size: number) => new RegExp(`${op}: index ${v} .*out of range for a dimension of size ${size}`);

    test('embedding (and nn.Embedding) names the id and the vocabulary size', () => {
      k.tidy(() => {
        const w = x([5, 3]);
        assert.throws(run(() => k.embedding(idx([[0, 1], [-1, 2]]), w)), bad('(index_select|indexSelect)', -1, 5));
        assert.throws(run(() => k.embedding(idx([0, 5], 'int32'), w)), bad('(index_select|indexSelect)', 5, 5));
        // the padding_idx path (weight requires grad) checks too
        const table = new k.nn.Embedding(5, 3, { paddingIdx: 0 });
        table.to(backend);
        assert.throws(run(() => table.forward(idx([[3, -5]]))), bad('(index_select|indexSelect)', -5, 5));
        assert.deepEqual(k.embedding(idx([4, 0]), w).toArray(), [[12, 13, 14], [0, 1, 2]]);
      });
    });

    test('indexSelect, indexAdd, gather and scatterAdd refuse negatives and size', () => {
      k.tidy(() => {
        const m = x([3, 4]);
        assert.throws(run(() => k.indexSelect(m, 0, idx([0, -1], 'int32'))), bad('(index_select|indexSelect)', -1, 3));
        assert.throws(run(() => k.indexSelect(m, -1, idx([4]))), bad('(index_select|indexSelect)', 4, 4));
        assert.throws(run(() => k.indexAdd(m, 1, idx([1, -4]), k.ones([3, 2], { backend }))), bad('(index_add|indexAdd)', -4, 4));
        assert.throws(run(() => k.gather(m, 1, idx([[0], [-1], [1]]))), bad('gather', -1, 4));
        assert.throws(run(() => k.scatterAdd(m, 0, idx([[0, 1, -3, 2]]), k.ones([1, 4], { backend }))), bad('(scatter_add|scatterAdd)', -3, 3));
        // a non-contiguous index
        assert.throws(run(() => k.gather(m, 1, idx([[0, 1, 2], [3, -2, 0]]).t())), bad('gather', -2, 4));
        // indices that fit still select
        assert.deepEqual(k.indexSelect(m, 0, idx([2, 0])).toArray(), [[8, 9, 10, 11], [0, 1, 2, 3]]);
        assert.deepEqual(k.gather(m, 1, idx([[3], [0], [1]])).toArray(), [[3], [4], [9]]);
      });
    });

    if (backend === 'cpu')
      test('a far-out int64 id is printed exactly', () => {
        k.tidy(() => assert.throws(() => k.indexSelect(x([3, 4]), 0, k.tensor([2n ** 40n], { backend })), /index_select: index 1099511627776 at position 0 of index \[1\]/));
      });

    test('Python-style negative dims and view indices still work; ignore_index -100 is not an index', () => {
      k.tidy(() => {
        const m = x([3, 4]);
        assert.deepEqual(m.select(0, -1).toArray(), [8, 9, 10, 11]);
        assert.deepEqual(m.narrow(-1, -2, 2).toArray(), [[2, 3], [6, 7], [10, 11]]);
        assert.deepEqual(m.slice(1, -3, -1).toArray(), [[1, 2], [5, 6], [9, 10]]);
        const loss = crossEntropyComposite(m, idx([1, -100, 3]));
        assert.ok(Number.isFinite(loss.item()));
      });
    });
  });
