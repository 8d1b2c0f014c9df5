// Creation ops, data round trips for every dtype, and the seeded generator.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { fillRandom, philox } from '../../src/tensor/rng.js';

const backends = ['ref', ...(k.hasBackend('cpu') ? ['cpu'] : [])];

test('Philox4x32-10 matches the Random123 known-answer vectors', () => {
  // kat_vectors from Random123 (philox4x32_10): counter, key -> output
  const out = new Uint32Array(4);
  philox(0, 0, 0, 0, out);
  assert.deepEqual([...out], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
});

for (const backend of backends) {
  describe(`creation (${backend})`, () => {
    test('nested arrays, dtypes and toArray (int64 as numbers)', () => {
      k.tidy(() => {
        assert.deepEqual(k.tensor([[1, 2], [3, 4]], { backend }).toArray(), [[1, 2], [3, 4]]);
        assert.deepEqual(k.tensor([1, -2, 3], { backend, dtype: 'int64' }).toArray(), [1, -2, 3]);
        assert.deepEqual(k.tensor([true, false], { backend }).toArray(), [1, 0]);
        assert.equal(k.tensor(2.5, { backend }).item(), 2.5);
        assert.deepEqual(k.tensor(new BigInt64Array([5n, -1n]), { backend }).toArray(), [5, -1]);
        assert.deepEqual(k.tensor(new Float32Array([1, 2, 3, 4, 5, 6]), { backend, shape: [2, 3] }).shape, [2, 3]);
        for (const dtype of k.DTYPES) {
          const t = k.tensor([0, 1, 2], { backend, dtype });
          assert.equal(t.dtype, dtype);
          assert.deepEqual(t.toArray(), dtype === 'bool' ? [0, 1, 1] : [0, 1, 2], dtype);
        }
      });
    });

    test('zeros, ones, full, arange, eye', () => {
      k.tidy(() => {
        assert.deepEqual(k.zeros([2, 2], { backend }).toArray(), [[0, 0], [0, 0]]);
        assert.deepEqual(k.ones([3], { backend, dtype: 'int32' }).toArray(), [1, 1, 1]);
        assert.deepEqual(k.full([2], 7, { backend, dtype: 'bfloat16' }).toArray(), [7, 7]);
        assert.deepEqual(k.arange(2, 8, 2, { backend }).toArray(), [2, 4, 6]);
        assert.equal(k.arange(5, undefined, 1, { backend }).dtype, 'int64');
        assert.deepEqual(k.arange(0, 1, 0.25, { backend }).toArray(), [0, 0.25, 0.5, 0.75]);
        assert.deepEqual(k.eye(2, 3, { backend }).toArray(), [[1, 0, 0], [0, 1, 0]]);
      });
    });

    test('rand/randn/randint are seeded and reproducible', () => {
      k.tidy(() => {
        k.manualSeed(42);
        const a = k.rand([1000], { backend }).toFloat32Array();
        k.manualSeed(42);
        const b = k.rand([1000], { backend }).toFloat32Array();
        assert.deepEqual(a, b);
        const mean = a.reduce((s, x) => s + x, 0) / a.length;
        assert.ok(Math.abs(mean - 0.5) < 0.05 && Math.min(...a) >= 0 && Math.max(...a) < 1);
        const n = k.randn([4000], { backend, generator: new k.Generator(1) }).toFloat32Array();
        const m = n.reduce((s, x) => s + x, 0) / n.length;
        const v = n.reduce((s, x) => s + (x - m) ** 2, 0) / n.length;
        assert.ok(Math.abs(m) < 0.06 && Math.abs(v - 1) < 0.08, `mean ${m} var ${v}`);
        const r = k.randint(3, 9, [500], { backend }).toArray() as number[];
        assert.ok(r.every((x) => Number.isInteger(x) && x >= 3 && x < 9));
        assert.equal(new Set(r).size, 6);
      });
    });

    test('uniform draws equal the generator definition element by element', () => {
      k.tidy(() => {
        const want = new Float64Array(37);
        fillRandom(want, 'uniform', 5, 10);
        const gen = new k.Generator(5);
        gen.counter = 10;
        assert.deepEqual([...k.rand([37], { backend, generator: gen, dtype: 'float64' }).toTypedArray()], [...want]);
      });
    });
  });
}
