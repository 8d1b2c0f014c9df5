// ggml's block formats: hand-worked Q8_0 and Q4_0 blocks byte for byte (the scale, C's
// round-half-away for Q8_0, Q4_0's truncation after +8.5 and its nibble order), Q4_K and Q6_K
// round trips within the error their step sizes allow, F16/BF16 exact on representable values,
// and the tensor-type choices of q4_0 / q4_k_m (llama-quantize's mixture, fallbacks for short rows).
// That llama.cpp decodes these bytes to the same model is checked in llama_cpp.test.ts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeGgml, encodeGgml } from '../../src/gguf/codec.js';
import { tensorType, useMoreBits } from '../../src/gguf/tensor_types.js';
import type { ExportTensor } from '../../src/gguf/arch.js';
import { seeded } from '../helpers.js';

test('Q8_0: d = amax/127 as f16, q = roundf(x/d) (half away from zero)', () => {
  // amax 127 gives d = 1 exactly, so q = x: 2.5 -> 3 and -2.5 -> -3 (roundf), not banker's 2 / -2
  const x = Float32Array.from({ length: 32 }, (_, j) => j - 16);
  x[0] = -127; x[1] = 2.5; x[2] = -2.5;
  const b = encodeGgml('Q8_0', x);
  assert.equal(b.length, 34);
  assert.equal(b[0] | (b[1] << 8), 0x3c00, 'd = 1.0 in f16');
  const q = new Int8Array(b.buffer, 2, 32);
  assert.deepEqual([...q], [-127, 3, -3, ...Array.from({ length: 29 }, (_, j) => j + 3 - 16)]);
  assert.deepEqual([...decodeGgml('Q8_0', b, 32)], [...q]);
});

test('Q4_0: d = (signed value of largest |x|) / -8, q = min(15, trunc(x/d + 8.5)), low nibbles first', () => {
  // x_j = j - 16: the largest magnitude is x_0 = -16, so d = 2 and x/d + 8.5 = j/2 + 0.5
  const x = Float32Array.from({ length: 32 }, (_, j) => j - 16);
  const b = encodeGgml('Q4_0', x);
  assert.equal(b.length, 18);
  assert.equal(b[0] | (b[1] << 8), 0x4000, 'd = 2.0 in f16');
  const q = Array.from({ length: 32 }, (_, j) => Math.min(15, Math.trunc(j / 2 + 0.5)));
  for (let j = 0; j < 16; j++) assert.equal(b[2 + j], q[j] | (q[j + 16] << 4), `byte ${j}: element ${j} low, ${j + 16} high`);
  // decoded: (q - 8) * 2
  assert.deepEqual([...decodeGgml('Q4_0', b, 32)], q.map((v) => (v - 8) * 2));
});

/** max |decode(encode(x)) - x| over data uniform in [-1, 1). */
function roundTripError(t: 'Q4_K' | 'Q6_K', n: number): number {
  const x = Float32Array.from(seeded(n, 7));
  const y = decodeGgml(t, encodeGgml(t, x), n);
  return x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i])), 0);
}

test('Q4_K: 144-byte super-blocks; error within half a step plus the 6-bit scale/min rounding', () => {
  assert.equal(encodeGgml('Q4_K', new Float32Array(512)).length, 288);
  // range 2 over 15 steps: half a step 0.067; min rounding <= (1/63)/2 = 0.008; scale rounding
  // moves the top level by <= 15 * (2/15/63)/2 = 0.016: 0.09 in all
  const err = roundTripError('Q4_K', 1024);
  assert.ok(err < 0.09 && err > 0.01, `max error ${err}`);
});

test('Q6_K: 210-byte super-blocks; error within one step of 1/32 plus the int8 scale rounding', () => {
  assert.equal(encodeGgml('Q6_K', new Float32Array(256)).length, 210);
  // step <= 1/32; the largest |x| maps to -32, so a value of the other sign as large clamps at +31
  // (up to one step, as in Q4_0); the int8 scale (d = max/128) adds <= 32 * (1/32/128)/2 = 0.004
  const err = roundTripError('Q6_K', 1024);
  assert.ok(err < 0.036 && err > 0.001, `max error ${err}`);
});

test('Q4_K and Q6_K: a block of zeros decodes to zeros; a constant block to itself within a step', () => {
  for (const t of ['Q4_K', 'Q6_K'] as const) {
    assert.deepEqual([...decodeGgml(t, encodeGgml(t, new Float32Array(256)), 256)], new Array(256).fill(0));
    const c = decodeGgml(t, encodeGgml(t, new Float32Array(256).fill(-0.75)), 256);
    assert.ok(c.every((v) => Math.abs(v + 0.75) < 0.01), `${t}: ${c[0]}`);
  }
});

test('F16 and BF16 store representable values exactly; F32 is the bytes', () => {
  const x = Float32Array.from([0, 1, -2, 0.5, 57344, -0.125, 3.75, 1024]); // exact in f16 and bf16
  for (const t of ['F32', 'F16', 'BF16'] as const) assert.deepEqual([...decodeGgml(t, encodeGgml(t, x), 8)], [...x], t);
  assert.throws(() => decodeGgml('Q8_0', new Uint8Array(33), 32), /take 34 bytes, got 33/);
  assert.throws(() => encodeGgml('Q4_0', new Float32Array(48)), /not a whole number of 32-element blocks/);
});

const matrix = (name: string, row = 512): ExportTensor => ({ name, shape: [8, row], role: 'matrix', values: () => new Float32Array(0) });

test("q4_k_m follows llama-quantize: output q6_K, attn_v/ffn_down q6_K on use_more_bits layers, else q4_K; short rows fall back", () => {
  // use_more_bits(i, 16): i < 2, i >= 14, or (i - 2) % 3 == 2  ->  0 1 4 7 10 13 14 15
  assert.deepEqual(Array.from({ length: 16 }, (_, i) => i).filter((i) => useMoreBits(i, 16)), [0, 1, 4, 7, 10, 13, 14, 15]);
  assert.equal(tensorType(matrix('output.weight'), 'q4_k_m', 16), 'Q6_K');
  assert.equal(tensorType(matrix('blk.4.attn_v.weight'), 'q4_k_m', 16), 'Q6_K');
  assert.equal(tensorType(matrix('blk.5.attn_v.weight'), 'q4_k_m', 16), 'Q4_K');
  assert.equal(tensorType(matrix('blk.15.ffn_down.weight'), 'q4_k_m', 16), 'Q6_K');
  assert.equal(tensorType(matrix('blk.5.attn_q.weight'), 'q4_k_m', 16), 'Q4_K');
  assert.equal(tensorType(matrix('blk.5.attn_q.weight', 64), 'q4_k_m', 16), 'Q4_0', 'a 64-wide row has no whole 256-block');
  assert.equal(tensorType(matrix('output.weight', 64), 'q4_0', 16), 'Q8_0');
  assert.equal(tensorType(matrix('blk.0.attn_q.weight', 48), 'q8_0', 16), 'F16');
  assert.equal(tensorType({ ...matrix('blk.0.attn_norm.weight'), shape: [512], role: 'vector' }, 'q4_0', 16), 'F32');
  assert.equal(tensorType({ ...matrix('blk.0.ffn_gate_inp.weight'), role: 'router' }, 'q8_0', 16), 'F32');
});
