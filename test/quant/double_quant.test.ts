// Double quantization: the signed dynamic map's hand-checked entries, size and symmetry (values
// from bitsandbytes' create_dynamic_map construction worked by hand), the statistics' round-trip
// bound (half the map's local gap times the nested absmax), and 4-bit weights whose absmax is
// double-quantized decoding to code * dequantized absmax.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DYNAMIC_MAP, NESTED_BLOCK_SIZE, dequantizeStats, quantizeStats } from '../../src/quant/double_quant.js';
import { NF4_CODE, blockAbsmax, dequantize4bit, quantize4bit } from '../../src/quant/four_bit.js';
import { seeded } from '../helpers.js';

test('signed dynamic map: 256 sorted entries, 0 and 1, symmetric around 0 except the top', () => {
  const m = DYNAMIC_MAP;
  assert.equal(m.length, 256);
  assert.ok(m.every((v, i) => i === 0 || v > m[i - 1]), 'strictly increasing');
  // 2 * (1 + 2 + ... + 64) = 254 signed midpoints, then 0 and 1
  assert.equal(m[127], 0);
  assert.equal(m[255], 1);
  for (let i = 0; i < 127; i++) assert.equal(m[i], -m[254 - i], `entry ${i} mirrors ${254 - i}`);
  // decade 0 (1e-6): one midpoint of [0.1, 1] -> 0.55e-6, the smallest magnitude
  assert.equal(m[128], Math.fround(0.55e-6));
  // decade 6 (1e0): 64 midpoints, the largest (0.1 + 0.9 * 63.5 / 64) = 0.99296875
  assert.equal(m[254], Math.fround(0.99296875));
  assert.equal(m[0], -Math.fround(0.99296875));
  // decade 5 (1e-1): midpoints of 32 steps of 0.028125 -> first 0.1140625 * 0.1
  assert.ok(m.includes(Math.fround(0.01140625)));
});

test('statistics round trip within half the local gap of the map times the nested absmax', () => {
  for (const n of [1, 7, 257, 1000]) {
    const stats = Float32Array.from(seeded(n, n, 0.001, 0.3)); // absmax values are positive
    const q = quantizeStats(stats);
    assert.equal(q.codes.length, n);
    assert.equal(q.nestedAbsmax.length, Math.ceil(n / NESTED_BLOCK_SIZE));
    assert.equal(q.offset, Math.fround(stats.reduce((a, b) => a + b, 0) / n), 'offset = mean');
    const back = dequantizeStats(q);
    stats.forEach((v, i) => {
      const c = q.codes[i];
      const gap = Math.max(c > 0 ? DYNAMIC_MAP[c] - DYNAMIC_MAP[c - 1] : 0, c < 255 ? DYNAMIC_MAP[c + 1] - DYNAMIC_MAP[c] : 0);
      const bound = (gap / 2) * q.nestedAbsmax[Math.floor(i / NESTED_BLOCK_SIZE)] + 1e-7;
      assert.ok(Math.abs(v - back[i]) <= bound, `n=${n} i=${i}: |${v} - ${back[i]}| > ${bound}`);
    });
  }
});

test('a double-quantized 4-bit tensor decodes with the dequantized absmax', () => {
  const x = Float32Array.from(seeded(33 * 70, 3, -2, 2));
  const plain = quantize4bit(x, [33, 70], { blockSize: 32 });
  const dq = quantize4bit(x, [33, 70], { blockSize: 32, doubleQuant: true });
  assert.deepEqual(dq.packed, plain.packed, 'codes are chosen with the exact absmax, as bitsandbytes does');
  assert.ok(!(dq.absmax instanceof Float32Array));
  const absmax = blockAbsmax(dq);
  const y = dequantize4bit(dq);
  y.forEach((v, i) => {
    const byte = dq.packed[i >> 1];
    assert.equal(v, Math.fround(NF4_CODE[i % 2 ? byte & 15 : byte >> 4] * absmax[Math.floor(i / 32)]));
  });
  assert.throws(() => quantizeStats(new Float32Array(4), 100), /blockSize must be a power of two, got 100/);
});
