// NF4 / FP4 block-wise quantization: the code books' hand-checked entries, exact round trips
// of representable values, the nibble layout, and the per-block error bound (half the widest
// gap of the code book times the block's absmax).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FP4_CODE, NF4_CODE, blockAbsmax, dequantize4bit, quantize4bit } from '../../src/quant/four_bit.js';
import { seeded } from '../helpers.js';

test('code books: NF4 spans [-1, 1] with an exact zero; FP4 is sign + e2m1', () => {
  assert.equal(NF4_CODE.length, 16);
  assert.deepEqual([NF4_CODE[0], NF4_CODE[7], NF4_CODE[15]], [-1, 0, 1]);
  assert.ok(NF4_CODE.every((v, i) => i === 0 || v > NF4_CODE[i - 1]), 'sorted');
  assert.deepEqual(Array.from(FP4_CODE.slice(0, 8), (v) => Math.round(v * 1e4) / 1e4), [0, 0.0052, 0.6667, 1, 0.3333, 0.5, 0.1667, 0.25]);
  assert.ok(FP4_CODE.slice(8).every((v, i) => v === -FP4_CODE[i]));
});

test('representable values round-trip exactly; two codes per byte, the first in the high nibble', () => {
  const absmax = 2.5;
  const values = Float32Array.from(NF4_CODE, (c) => Math.fround(c * absmax));
  const q = quantize4bit(values, [16], { type: 'nf4', blockSize: 16 });
  assert.deepEqual(Array.from(blockAbsmax(q)), [absmax]);
  assert.equal(q.packed[0], (0 << 4) | 1, 'codes 0 and 1');
  assert.equal(q.packed[7], (14 << 4) | 15);
  assert.deepEqual(Array.from(dequantize4bit(q)), Array.from(values));
});

for (const type of ['nf4', 'fp4'] as const)
  test(`${type}: per-block error bound on odd sizes`, () => {
    const code = type === 'nf4' ? NF4_CODE : FP4_CODE;
    const sorted = Array.from(code).sort((a, b) => a - b);
    const gap = Math.max(...sorted.slice(1).map((v, i) => v - sorted[i]));
    for (const n of [1, 7, 33, 257]) {
      const x = Float32Array.from(seeded(n, n, -3, 3));
      const q = quantize4bit(x, [n], { type, blockSize: 64 });
      const absmax = blockAbsmax(q);
      assert.equal(absmax.length, Math.ceil(n / 64));
      assert.equal(q.packed.length, Math.ceil(n / 2));
      const y = dequantize4bit(q);
      x.forEach((v, i) => {
        const bound = (absmax[Math.floor(i / 64)] * gap) / 2 + 1e-6;
        assert.ok(Math.abs(v - y[i]) <= bound, `${type} n=${n} i=${i}: |${v} - ${y[i]}| > ${bound}`);
      });
    }
  });

test('bad input is an error', () => {
  assert.throws(() => quantize4bit(Float32Array.from([1, NaN]), [2]), /value NaN at index 1 is not finite/);
  assert.throws(() => quantize4bit(new Float32Array(4), [3]), /shape \[3\] does not hold 4 values/);
  for (const blockSize of [3, 48, 8, 8192])
    assert.throws(() => quantize4bit(new Float32Array(4), [4], { blockSize }), new RegExp(`blockSize must be a power of two in \\[16, 4096\\], got ${blockSize}`));
  assert.throws(() => quantize4bit(new Float32Array(4), [4], { type: 'int4' as 'nf4' }), /type must be 'nf4' or 'fp4', got "int4"/);
});
