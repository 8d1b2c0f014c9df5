// The decode GEMV (native/quant_gemv.cc: float32 x of 1..8 rows times a bf16, int8, q4 or NF4
// weight, dequantized in registers) against the float64 reference backend (src/backend/ref/quant.ts
// decodes the same bytes in float64 and multiplies with textbook loops), on odd shapes: in and out
// features from 1, 7, 33, 257 (vector tails, 4-bit blocks that straddle rows: the element-wise
// path) and on aligned ones (K a multiple of the q4 group: the in-register table path), with 1 and
// 2 threads. Every check runs in child processes with KESTREL_QUANT_GEMV=float (x stays float32;
// the int8-activation path for int8/q4 weights has its own test, quant_gemv_int8.test.ts), the AVX2
// and scalar bodies with KESTREL_SIMD forced; the parent checks that it ran AVX-512 where the CPU
// has it. A row's result does not depend on the rows in the call with it (bit for bit the row alone).
// bf16 weights take the GEMV for 9-63 rows too, 8 rows at a time, where the CPU has AVX2 and
// no AVX-512 (bit for bit its blocks). Also: the q4 quantizer's rounding.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as k from '../../src/index.js';
import type { QuantLinearState } from '../../src/quant/quant_linear.js';
import { skipUnless } from '../devices.js';
import { assertClose, onCpuThreads, runChild, seeded, seededTensor } from '../helpers.js';

const CHILD = process.env.KESTREL_GEMV_CHILD === '1';
const FLOAT_CHILD = { KESTREL_GEMV_CHILD: '1', KESTREL_QUANT_GEMV: 'float' };
// float32 sums of up to 257 products against float64: |err| <= K * 2^-24 * sum|x w| << 1e-5 here
const VS_REF = { atol: 1e-5, rtol: 1e-4 };

type Format = { type: 'bf16' | 'int8' | 'q4' | 'nf4'; blockSize?: number };
const FORMATS: Format[] = [{ type: 'bf16' }, { type: 'int8' }, { type: 'q4' }, { type: 'q4', blockSize: 64 }, { type: 'nf4', blockSize: 32 }];
const ODD = [1, 7, 33, 257];
// [N, K]: every pair of odd sizes, then K a multiple of 64 (the q4/nf4 fast path; 256 + a tail for bf16/int8)
const SHAPES: [number, number][] = [...ODD.flatMap((n) => ODD.map((kk): [number, number] => [n, kk])), [33, 64], [7, 256], [257, 128], [5, 320]];

/** A quantized [N, K] weight from seeded values, through each format's own quantizer. */
function state(N: number, K: number, f: Format): QuantLinearState {
  const w = Float32Array.from(seeded(N * K, N * 31 + K, -0.5, 0.5));
  const base = { type: f.type, inFeatures: K, outFeatures: N };
  if (f.type === 'bf16') return { ...base, data: Uint16Array.from(w, k.f32ToBf16), scales: new Float32Array(0) };
  if (f.type === 'int8') {
    const q = k.quant.quantizeInt8(w, [N, K]);
    return { ...base, data: q.data, scales: q.scb };
  }
  if (f.type === 'q4') {
    const q = k.quant.quantizeQ4(w, [N, K], f.blockSize);
    return { ...base, data: q.packed, scales: q.scales, blockSize: q.blockSize };
  }
  const q = k.quant.quantize4bit(w, [N, K], { type: f.type, blockSize: f.blockSize });
  return { ...base, data: q.packed, scales: q.absmax as Float32Array, blockSize: q.blockSize };
}

function gemvVsRef(threads: number): void {
  for (const f of FORMATS)
    for (const [N, K] of SHAPES) {
      const s = state(N, K, f);
      const qc = new k.quant.QuantLinear(s, { backend: 'cpu' });
      const qr = new k.quant.QuantLinear(s, { backend: 'ref' });
      for (const M of [1, 3, 5, 7, 8])
        k.tidy(() => {
          const x = seededTensor([M, K], 'float32', 'cpu', M * 7 + K);
          const what = `${f.type}/${f.blockSize ?? 'default'} M=${M} N=${N} K=${K} threads=${threads}`;
          const y = qc.applyWeight(x);
          assertClose(y, qr.applyWeight(x.to('ref')), { ...VS_REF, what });
          // a row's sums run in the same order whatever rows share the call: its last row alone is bit for bit the same
          assert.deepEqual(y.narrow(0, M - 1, 1).toFloat32Array(), qc.applyWeight(x.narrow(0, M - 1, 1)).toFloat32Array(), `${what}: row ${M - 1} alone`);
        });
      qc.dispose();
      qr.dispose();
    }
}

/**
 * bf16 weights on AVX2 without AVX-512 (quant_gemv_rows): 9 to 63 rows are the GEMV's own 8-row blocks
 * bit for bit (and match the reference); from 64 rows the tiled path, whose sums run in another order.
 */
function bf16RowBlocks(): void {
  const s = state(33, 257, { type: 'bf16' });
  const qc = new k.quant.QuantLinear(s, { backend: 'cpu' });
  const qr = new k.quant.QuantLinear(s, { backend: 'ref' });
  k.tidy(() => {
    for (const M of [9, 17, 63, 64]) {
      const x = seededTensor([M, 257], 'float32', 'cpu', M);
      const whole = qc.applyWeight(x).toFloat32Array();
      const blocks = Float32Array.from(k.cat(Array.from({ length: Math.ceil(M / 8) }, (_, i) => qc.applyWeight(x.narrow(0, 8 * i, Math.min(8, M - 8 * i)))), 0).toFloat32Array());
      const same = whole.every((v, i) => v === blocks[i]);
      assert.equal(same, M < 64, `bf16 M=${M}: ${M < 64 ? 'the GEMV blocks exactly' : 'the tiled path, not the GEMV blocks'}`);
      assertClose(qc.applyWeight(x), qr.applyWeight(x.to('ref')), { ...VS_REF, what: `bf16 M=${M} vs reference` });
    }
  });
  qc.dispose();
  qr.dispose();
}

/** With float x the GEMV (M <= 8) equals the tiled SGEMM path (M = 9) row for row. */
function gemvVsTiles(): void {
  const s = state(257, 320, { type: 'q4' });
  const q = new k.quant.QuantLinear(s, { backend: 'cpu' });
  k.tidy(() => {
    const x = seededTensor([9, 320], 'float32', 'cpu', 5);
    const tiled = q.applyWeight(x);
    const rows = k.cat([0, 1, 2].map((i) => q.applyWeight(x.narrow(0, i * 3, 3))), 0);
    assertClose(rows, tiled, { atol: 1e-5, rtol: 1e-5, what: 'gemv vs tiles' });
  });
  q.dispose();
}

if (CHILD)
  onCpuThreads((threads) => {
    gemvVsRef(threads);
    gemvVsTiles();
    if (process.env.KESTREL_BF16_ROWS_CHILD === '1') bf16RowBlocks();
  });
else
  describe('decode GEMV (quant_gemv.cc)', { skip: skipUnless('cpu') }, () => {
    test('every format matches the float64 reference on odd and aligned shapes, M = 1, 3, 5, 7, 8, 1 and 2 threads; equals the tiled path', () => {
      const out = runChild(fileURLToPath(import.meta.url), FLOAT_CHILD);
      // the CPU's own best body ran (AVX-512 on this kind of machine, where it has it)
      const hasAvx512 = k.getBackend('cpu') && /avx512f/.test(readFileSync('/proc/cpuinfo', 'utf8'));
      assert.match(out, hasAvx512 ? /"avx512f":true/ : /^ok /m);
    });
    for (const simd of ['avx2', 'scalar'])
      test(`the ${simd} body matches the reference (child process, KESTREL_SIMD=${simd})`, () => {
        const out = runChild(fileURLToPath(import.meta.url), { ...FLOAT_CHILD, KESTREL_SIMD: simd });
        assert.match(out, simd === 'avx2' ? /"avx2":true,"fma":true,"avx512f":false/ : /"avx2":false/);
      });

    // KESTREL_SIMD=avx2 hides AVX-512 from the kernels too, so an AVX-512 CPU runs this as an AVX2 one
    const avx2 = /\bavx2\b/.test(readFileSync('/proc/cpuinfo', 'utf8')) && /\bfma\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));
    test('bf16 weights, 9-63 rows of x: the GEMV 8 rows at a time, bit for bit; 64 rows: the tiles (child process, KESTREL_SIMD=avx2)', { skip: !avx2 && 'this CPU lacks AVX2/FMA' }, () => {
      runChild(fileURLToPath(import.meta.url), { ...FLOAT_CHILD, KESTREL_SIMD: 'avx2', KESTREL_BF16_ROWS_CHILD: '1' });
    });

    test('bad input: a bf16 weight of the wrong dtype or size is named', () => {
      const q = new k.quant.QuantLinear(state(4, 32, { type: 'bf16' }), { backend: 'cpu' });
      const kern = k.getBackend('cpu').kernels;
      const x = k.zeros([1, 32], { backend: 'cpu' });
      const y = k.zeros([1, 4], { backend: 'cpu' });
      const w = { kind: 'bf16' as const, N: 4, K: 32, data: q.qweight, code: null, blockSize: 0, scales: q.qweight, nested: null };
      assert.throws(() => kern.quantLinear(x, { ...w, N: 5 }, k.zeros([1, 5], { backend: 'cpu' })), /bf16 weight \[128\] must have 160 elements/);
      const i8 = k.zeros([128], { dtype: 'int8', backend: 'cpu' });
      assert.throws(() => kern.quantLinear(x, { ...w, data: i8 }, y), /bf16 weight must be bfloat16, got int8/);
      assert.throws(() => new k.quant.QuantLinear({ type: 'bf16', inFeatures: 32, outFeatures: 4, data: new Uint8Array(128), scales: new Float32Array(0) }), /data must be a Uint16Array of 128 values, got Uint8Array\(128\)/);
      for (const t of [x, y, i8]) t.dispose();
      q.dispose();
    });
  });

describe('q4 quantizer (q4.ts)', { skip: CHILD }, () => {
  // code 0 is -8 d and code 15 is +7 d: a value of the extreme's sign rounds to within d/2, one of
  // the other sign beyond 7.5 |d| clamps to 7 d, within |d| (q4_0's asymmetry)
  test("q4_0's rounding: the group's signed extreme maps to code 0 exactly, every value within d/2 (d past the clamp)", () => {
    const w = Float32Array.from(seeded(7 * 40, 3, -2, 2));
    w[5] = -3.5; // the extreme of group 0 (negative: d > 0)
    w[40] = 2.75; // the extreme of group 1 (positive: d < 0)
    const q = k.quant.quantizeQ4(w, [7, 40], 32);
    assert.equal(q.scales[0], Math.fround(-3.5 / -8));
    assert.equal(q.scales[1], Math.fround(2.75 / -8));
    const back = k.quant.dequantizeQ4(q);
    for (let i = 0; i < w.length; i++) {
      const d = Math.abs(q.scales[Math.floor(i / 32)]);
      const bound = Math.abs(w[i]) > 7.5 * d ? d : d / 2;
      assert.ok(Math.abs(back[i] - w[i]) <= bound + 1e-6, `value ${i}: ${w[i]} -> ${back[i]} (d ${d})`);
    }
    assert.equal(back[5], -3.5);
    assert.equal(back[40], 2.75);
    assert.throws(() => k.quant.quantizeQ4(w, [7, 41]), /shape \[7,41\] does not hold 280 values/);
  });
});
