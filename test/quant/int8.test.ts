// LLM.int8 row-wise weights: a hand-worked row, the round-trip bound (half a step, SCB / 254,
// per row), zero rows, and bad input.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dequantizeInt8, quantizeInt8 } from '../../src/quant/int8.js';
import { seeded } from '../helpers.js';

test('hand-worked row: q = round(127 w / absmax), ties to even like torch.round', () => {
  // absmax 2: 1 -> 63.5 -> 64 (even), -0.5 -> -31.75 -> -32, 2 -> 127, 0.3 -> 19.05 -> 19
  const q = quantizeInt8(Float32Array.from([1, -0.5, 2, 0.3]), [1, 4]);
  assert.deepEqual(Array.from(q.scb), [2]);
  assert.deepEqual(Array.from(q.data), [64, -32, 127, 19]);
  assert.deepEqual(Array.from(dequantizeInt8(q)), [64, -32, 127, 19].map((v) => Math.fround((v * 2) / 127)));
});

test('round trip within half a step per row; zero rows stay zero', () => {
  for (const [rows, cols] of [[1, 1], [7, 33], [33, 257]]) {
    const w = Float32Array.from(seeded(rows * cols, rows + cols, -3, 3));
    w.fill(0, 0, cols); // row 0 all zero
    const q = quantizeInt8(w, [rows, cols]);
    assert.equal(q.scb[0], 0);
    const back = dequantizeInt8(q);
    w.forEach((v, i) => {
      const bound = q.scb[Math.floor(i / cols)] / 254 + 1e-6;
      assert.ok(Math.abs(v - back[i]) <= bound, `[${rows}, ${cols}] ${i}: |${v} - ${back[i]}| > ${bound}`);
    });
  }
});

test('bad input is an error', () => {
  assert.throws(() => quantizeInt8(new Float32Array(5), [2, 3]), /shape \[2,3\] does not hold 5 values/);
  assert.throws(() => quantizeInt8(Float32Array.from([1, Infinity]), [1, 2]), /value Infinity at index 1 is not finite/);
});
