// float16 / bfloat16 conversions on known bit patterns: subnormals, infinities, NaN, overflow
// and round-to-nearest-even ties (IEEE 754-2008 binary16; bfloat16 = the top half of binary32).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';

const f32 = (bits: number): number => new Float32Array(new Uint32Array([bits]).buffer)[0];

describe('float16', () => {
  const cases: [number, number, string][] = [
    [0, 0x0000, 'zero'],
    [-0, 0x8000, 'negative zero'],
    [1, 0x3c00, 'one'],
    [-2, 0xc000, 'minus two'],
    [65504, 0x7bff, 'max finite'],
    [65519.99, 0x7bff, 'just below the overflow midpoint rounds down'],
    [65520, 0x7c00, 'overflow midpoint rounds to inf'],
    [Infinity, 0x7c00, 'inf'],
    [-Infinity, 0xfc00, '-inf'],
    [2 ** -14, 0x0400, 'smallest normal'],
    [2 ** -24, 0x0001, 'smallest subnormal'],
    [2 ** -25, 0x0000, 'half the smallest subnormal ties to even (0)'],
    [3 * 2 ** -25, 0x0002, '1.5 subnormal ulps ties to even (2)'],
    [2 ** -25 * 1.0000001, 0x0001, 'above the tie rounds up'],
    [1 + 2 ** -11, 0x3c00, '1 + half ulp ties to even (down)'],
    [1 + 3 * 2 ** -11, 0x3c02, '1 + 1.5 ulp ties to even (up)'],
    [0.1, 0x2e66, '0.1'],
  ];
  for (const [x, bits, name] of cases)
    test(`${name}: ${x} -> 0x${bits.toString(16)}`, () => assert.equal(k.f32ToF16(x), bits));

  test('decode: every finite bit pattern round-trips exactly', () => {
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00) continue;
      assert.equal(k.f32ToF16(k.f16ToF32(h)), h, `0x${h.toString(16)}`);
    }
  });
  test('NaN stays NaN; inf decodes', () => {
    assert.ok(Number.isNaN(k.f16ToF32(k.f32ToF16(NaN))));
    assert.equal(k.f16ToF32(0x7c00), Infinity);
    assert.equal(k.f16ToF32(0x0001), 2 ** -24);
  });
});

describe('bfloat16', () => {
  const cases: [number, number, string][] = [
    [1, 0x3f80, 'one'],
    [-0, 0x8000, 'negative zero'],
    [Infinity, 0x7f80, 'inf'],
    [f32(0x3f808000), 0x3f80, 'tie rounds to even (down)'],
    [f32(0x3f818000), 0x3f82, 'tie rounds to even (up)'],
    [f32(0x3f808001), 0x3f81, 'above the tie rounds up'],
    [f32(0x7f7fffff), 0x7f80, 'max float32 rounds to inf'],
    [f32(0x00010000), 0x0001, 'subnormal kept'],
  ];
  for (const [x, bits, name] of cases)
    test(`${name}: -> 0x${bits.toString(16)}`, () => assert.equal(k.f32ToBf16(x), bits));
  test('NaN stays NaN (quiet)', () => {
    assert.ok(Number.isNaN(k.bf16ToF32(k.f32ToBf16(NaN))));
    assert.ok(Number.isNaN(k.bf16ToF32(k.f32ToBf16(f32(0x7f800001)))), 'signalling NaN must not become inf');
  });
});

const backends = ['ref', ...(k.hasBackend('cpu') ? ['cpu'] : [])];
for (const backend of backends) {
  test(`tensor casts agree with the scalar conversions (${backend})`, () => {
    const xs = [0, 1, -2.5, 65520, 2 ** -25, 3 * 2 ** -25, 1 + 2 ** -11, f32(0x3f808000), 1e-40, -Infinity, 0.1];
    k.tidy(() => {
      const t = k.tensor(xs, { backend });
      assert.deepEqual([...(t.to('float16').toTypedArray() as Uint16Array)], xs.map(k.f32ToF16));
      assert.deepEqual([...(t.to('bfloat16').toTypedArray() as Uint16Array)], xs.map(k.f32ToBf16));
      assert.deepEqual([...t.to('bfloat16').to('float32').toFloat32Array()], xs.map((x) => k.bf16ToF32(k.f32ToBf16(x))));
    });
  });
}
