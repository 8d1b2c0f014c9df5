// The prefill with int8 activations: a QuantLinear marked prefillDtype 'int8' multiplies float32 inputs
// of more rows than the decode GEMV's 8 (no gradient) with x quantized as q8_0 where the CPU takes the
// AVX2 integer path: q4 weights through the q4 GEMM (native/quant_gemm_q4.cc), int8 weights through the
// decode GEMV 8 rows at a time up to 127 rows (quant_gemv_rows). Checked in a child process per
// KESTREL_QUANT_GEMV:
//  - avx2: q4 weights whose blocks tile the rows, and int8 weights, equal q8_0 x times the dequantized
//    weight (float64) within float32 rounding of the sums, and the float x product within the int8
//    activation bound; q4: M from the first row count past the GEMV's (9) and around the 6-row tile
//    (9, 16, 32, 33, 36, 71, 257), N around the 16-column panel (1, 7, 16, 33, 257), K from one block
//    to 576; int8: M 9, 17, 40 and 127 (a last block of 1 to 8 rows), K 600 (a partial block);
//    strided rows of x; 1 and 2 threads;
//  - float x where the path does not apply, matching the float reference within float32 rounding
//    (which the q8_0 products miss): a row with NaN or inf (IEEE results; for int8 weights in the
//    8-row block that holds it), q4 blocks straddling rows (K = 33) or of 64, x that needs a gradient,
//    int8 weights from 128 rows (K = 600: several of the GEMM's packed k blocks), AVX-512 CPUs, and
//    KESTREL_QUANT_GEMV=float.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as k from '../../src/index.js';
import { loadNative } from '../../src/backend/addon.js';
import { skipUnless } from '../devices.js';
import { onCpuThreads, runChild, seeded } from '../helpers.js';
import { check, checkInt8Path, product } from './int8_reference.js';

const CHILD = process.env.KESTREL_GEMM_Q4_CHILD === '1';

/** A prefill-marked QuantLinear [N, K] of `type` and its dequantized float32 weight. */
function layer(type: 'q4' | 'int8', N: number, K: number, blockSize?: number): { q: k.quant.QuantLinear; wq: Float32Array } {
  const w = k.tensor(Float32Array.from(seeded(N * K, N * 31 + K, -0.5, 0.5)), { shape: [N, K], backend: 'cpu' });
  const q = k.quant.QuantLinear.fromWeight(w, null, { type, blockSize });
  w.dispose();
  q.prefillDtype = 'int8';
  return { q, wq: k.tidy(() => q.dequantize().toFloat32Array()) };
}

/** y = x Wᵀ through the layer for x [M, K], its rows `pad` floats apart beyond K (a strided view); x needing a gradient or not. */
function apply(q: k.quant.QuantLinear, xs: Float32Array, M: number, K: number, pad = 0, requiresGrad = false): Float32Array {
  return k.tidy(() => {
    const wide = new Float32Array(M * (K + pad));
    for (let m = 0; m < M; m++) wide.set(xs.subarray(m * K, (m + 1) * K), m * (K + pad));
    const x = k.tensor(wide, { shape: [M, K + pad], backend: 'cpu', requiresGrad }).slice(1, 0, K);
    return q.forward(x).toFloat32Array();
  });
}

function gemmVsRef(threads: number): void {
  const path = process.env.KESTREL_QUANT_GEMV!;
  assert.equal(loadNative()!.info().quantGemv, path);
  const integer = path === 'avx2' && !/\bavx512f\b/.test(cpuFlags()); // AVX-512 CPUs keep their float SGEMM
  const cases: { N: number; K: number; Ms: number[] }[] = [
    { N: 1, K: 32, Ms: [9, 32, 33, 36] },
    { N: 7, K: 96, Ms: [9, 16, 71] },
    { N: 16, K: 160, Ms: [33] },
    { N: 33, K: 576, Ms: [16, 32, 71] },
    { N: 257, K: 64, Ms: [257] },
  ];
  let worstRatio = 0;
  for (const { N, K, Ms } of cases) {
    const { q, wq } = layer('q4', N, K);
    for (const M of Ms) {
      const xs = Float32Array.from(seeded(M * K, M * 7 + K, -2, 2));
      const got = apply(q, xs, M, K, M % 2 ? 5 : 0);
      worstRatio = Math.max(worstRatio, checkInt8Path(got, xs, wq, [M, N, K], integer, `${path} q4 M=${M} N=${N} K=${K} threads=${threads}`));
    }
    q.dispose();
  }
  for (const M of [9, 17, 40, 127]) {
    const { q, wq } = layer('int8', 33, 600);
    const xs = Float32Array.from(seeded(M * 600, M * 5 + 1, -2, 2));
    worstRatio = Math.max(worstRatio, checkInt8Path(apply(q, xs, M, 600, M % 2 ? 3 : 0), xs, wq, [M, 33, 600], integer, `${path} int8 M=${M} N=33 K=600 threads=${threads}`));
    q.dispose();
  }
  // float x wherever the integer path does not apply
  const floatOnly: { type: 'q4' | 'int8'; N: number; K: number; M: number; blockSize?: number; grad?: boolean }[] = [
    { type: 'q4', N: 7, K: 33, M: 40 },                  // blocks of 32 straddling rows
    { type: 'q4', N: 7, K: 128, M: 40, blockSize: 64 },  // blocks of 64: not q4_0
    { type: 'q4', N: 33, K: 96, M: 40, grad: true },     // x needs a gradient (training)
    { type: 'int8', N: 33, K: 600, M: 128 },             // int8 weights from 128 rows: the float GEMM; K over several packed blocks
  ];
  for (const { type, N, K, M, blockSize, grad } of floatOnly) {
    const { q, wq } = layer(type, N, K, blockSize);
    const xs = Float32Array.from(seeded(M * K, M + K, -2, 2));
    const what = `${path} ${type} M=${M} N=${N} K=${K}${blockSize ? ` blocks of ${blockSize}` : ''}${grad ? ' x needs grad' : ''} threads=${threads} (float x)`;
    check(apply(q, xs, M, K, 0, grad), product(xs, wq, M, N, K), K, what);
    q.dispose();
  }
  // a non-finite x keeps the float path (for int8 weights, in its block of 8 rows): NaN and inf propagate to their rows only
  for (const type of ['q4', 'int8'] as const) {
    const { q, wq } = layer(type, 5, 64);
    const xs = Float32Array.from(seeded(40 * 64, 3));
    xs[5] = NaN;
    xs[64 + 9] = Infinity;
    const y = apply(q, xs, 40, 64);
    for (let n = 0; n < 5; n++) {
      assert.ok(Number.isNaN(y[n]), `${type} row 0 output ${n}: ${y[n]} (NaN in x)`);
      assert.ok(!Number.isFinite(y[5 + n]), `${type} row 1 output ${n}: ${y[5 + n]} (inf in x)`);
      assert.ok(Number.isFinite(y[10 + n]), `${type} row 2 output ${n}: ${y[10 + n]} (finite x)`);
    }
    // the rows past the non-finite block: the integer path where the CPU takes it
    if (type === 'int8') checkInt8Path(y.subarray(8 * 5), xs.subarray(8 * 64), wq, [32, 5, 64], integer, `${path} int8 rows 8-39 beside a non-finite block`);
    q.dispose();
  }
  if (integer) console.log(`added error at most ${worstRatio.toFixed(3)} of the bound`);
}

/** The forced avx2 path needs AVX2 and FMA; on AVX-512 CPUs the path stays float (checked as such). */
const cpuFlags = (): string => /^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '';
const hasAvx2 = (): boolean => /\bavx2\b/.test(cpuFlags()) && /\bfma\b/.test(cpuFlags());

if (CHILD) onCpuThreads(gemmVsRef);
else
  describe('prefill with int8 activations (quant_gemm_q4.cc, quant_gemv_rows)', { skip: skipUnless('cpu') }, () => {
    test('avx2: equals q8_0 x times the weight (float64), added error within the stated bound; float x where it does not apply', { skip: !hasAvx2() && 'this CPU lacks AVX2' }, () => {
      const out = runChild(fileURLToPath(import.meta.url), { KESTREL_QUANT_GEMV: 'avx2', KESTREL_GEMM_Q4_CHILD: '1' });
      const ratio = /added error at most [\d.]+ of the bound/.exec(out);
      if (!/\bavx512f\b/.test(cpuFlags())) assert.ok(ratio, `the child ran the integer path and reported its error:\n${out}`);
      console.log(`# ${ratio?.[0] ?? 'AVX-512 CPU: the float path throughout'}`);
    });
    test('KESTREL_QUANT_GEMV=float: every prefill keeps float x', () => {
      runChild(fileURLToPath(import.meta.url), { KESTREL_QUANT_GEMV: 'float', KESTREL_GEMM_Q4_CHILD: '1' });
    });
  });
