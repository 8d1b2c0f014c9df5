// The decode GEMV with int8 activations (native/quant_gemv_int8.cc) for int8 and q4 weights, every
// path forced in a child process (KESTREL_QUANT_GEMV=avx512vnni|avxvnni|avx2|scalar), M = 1..8
// rows (N = 257: M = 1, 3, 8), odd shapes (N and K from 1, 7, 33, 257, 576; q4 with K = 32..576: register tails of 16, 48, 80
// and 32 bytes), 1 and 2 threads. Two float64 references:
//  - exact: x quantized here the way q8_0 does it (d = max|x| / 127 per block of 32 in float32,
//    q = round-half-even(x / d)), times the dequantized weight: the kernel's integer sums are exact,
//    so it must match within float32 rounding of the sums (|err| <= K 2^-23 Σ|x̂ w| + 1e-6);
//  - float x: the added error of the int8 activations is within int8ActivationErrorBound
//    (Σ_b (d_b / 2) Σ_{k in b} |w|), the bound src/quant/int8_activations.ts states.
// Where a path does not take a weight (q4 with blocks straddling rows) the GEMV keeps
// float x and matches the float reference instead: both checks together prove which path ran.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as k from '../../src/index.js';
import { loadNative } from '../../src/backend/addon.js';
import { skipUnless } from '../devices.js';
import { onCpuThreads, runChild, seeded } from '../helpers.js';
import { check, checkInt8Path, product, q8Values } from './int8_reference.js';

const CHILD = process.env.KESTREL_GEMV_INT8_CHILD === '1';
const ODD = [1, 7, 33, 257];
const CASES: { type: 'int8' | 'q4'; N: number; K: number }[] = [
  ...ODD.flatMap((N) => [...ODD, 576].map((K) => ({ type: 'int8' as const, N, K }))),
  ...ODD.flatMap((N) => [32, 96, 160, 576, 33].map((K) => ({ type: 'q4' as const, N, K }))),
];

function gemvInt8VsRef(threads: number): void {
  const path = process.env.KESTREL_QUANT_GEMV!;
  assert.equal(loadNative()!.info().quantGemv, path);
  let worstRatio = 0; // the largest added error seen, as a fraction of its bound
  for (const { type, N, K } of CASES) {
    const w = k.tensor(Float32Array.from(seeded(N * K, N * 31 + K, -0.5, 0.5)), { shape: [N, K], backend: 'cpu' });
    const q = k.quant.QuantLinear.fromWeight(w, null, { type });
    const wq = k.tidy(() => q.dequantize().toFloat32Array());
    // which weights take the int8 path (quant_gemv_int8.cc): q4 whose blocks of 32 tile the rows; all int8
    const intPath = type === 'q4' ? K % 32 === 0 : true;
    // every M on the narrow layers, three on the widest (a float64 reference in TS takes time)
    for (const M of N === 257 ? [1, 3, 8] : [1, 2, 3, 4, 5, 6, 7, 8]) {
      const xs = Float32Array.from(seeded(M * K, M * 7 + K, -2, 2));
      const got = k.tidy(() => q.applyWeight(k.tensor(xs, { shape: [M, K], backend: 'cpu' })).toFloat32Array());
      const what = `${path} ${type} M=${M} N=${N} K=${K} threads=${threads}`;
      worstRatio = Math.max(worstRatio, checkInt8Path(got, xs, wq, [M, N, K], intPath, what));
    }
    w.dispose();
    q.dispose();
  }
  // int8's extremes: w = 127 or -128 meeting xq = 127 or -127, of the same sign in even rows (pair
  // sums up to 2 x 128 x 127 = 32512) and the opposite in odd ones (down to -32512); AVX2's int16
  // pairs saturate at +-32767, so w + 128 there would not fit
  for (const M of [1, 8]) {
    const N = 7, K = 257;
    const data = Int8Array.from({ length: N * K }, (_, i) => ((i % K) % 3 === 0) === (Math.floor(i / K) % 2 === 0) ? 127 : -128);
    const q = new k.quant.QuantLinear({ type: 'int8', inFeatures: K, outFeatures: N, data, scales: new Float32Array(N).fill(2) });
    const wq = k.tidy(() => q.dequantize().toFloat32Array());
    const xs = Float32Array.from({ length: M * K }, (_, i) => ((i % K) % 3 === 0 ? 1.5 : -1.5));
    const got = k.tidy(() => q.applyWeight(k.tensor(xs, { shape: [M, K], backend: 'cpu' })).toFloat32Array());
    check(got, product(q8Values(xs, M, K), wq, M, N, K), K, `${path} int8 extremes M=${M} threads=${threads} (q8_0 x, exact)`);
    q.dispose();
  }
  console.log(`added error at most ${worstRatio.toFixed(3)} of the bound`);
}

/** The CPU's flags from /proc/cpuinfo (which forced paths it can run). */
const cpuFlags = (): string => /^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '';
const PATHS: { path: string; needs: RegExp }[] = [
  { path: 'avx512vnni', needs: /\bavx512_vnni\b/ },
  { path: 'avxvnni', needs: /\bavx_vnni\b/ },
  { path: 'avx2', needs: /\bavx2\b/ },
  { path: 'scalar', needs: /./ },
];

if (CHILD) onCpuThreads(gemvInt8VsRef);
else
  describe('decode GEMV with int8 activations (quant_gemv_int8.cc)', { skip: skipUnless('cpu') }, () => {
    for (const { path, needs } of PATHS)
      test(`${path}: equals q8_0 x times the weight (float64), added error within the stated bound, M = 1..8`, () => {
        const env = { KESTREL_QUANT_GEMV: path, KESTREL_GEMV_INT8_CHILD: '1' };
        if (!needs.test(cpuFlags())) {
          // a path this CPU lacks is refused by name, never run
          assert.throws(() => runChild(fileURLToPath(import.meta.url), env), new RegExp(`KESTREL_QUANT_GEMV=${path}: this CPU`));
          return;
        }
        const out = runChild(fileURLToPath(import.meta.url), env);
        assert.match(out, new RegExp(`"quantGemv":"${path}"`));
        console.log(`# ${path}: ${/added error at most [\d.]+ of the bound/.exec(out)?.[0]}`);
      });

    test('auto picks the best integer path the CPU has; a non-finite x keeps the float path (NaN, inf propagate)', () => {
      const flags = cpuFlags();
      const best = /\bavx512_vnni\b/.test(flags) && /\bavx512bw\b/.test(flags) ? 'avx512vnni' : /\bavx_vnni\b/.test(flags) ? 'avxvnni' : /\bavx2\b/.test(flags) ? 'avx2' : 'float';
      assert.equal(loadNative()!.info().quantGemv, process.env.KESTREL_QUANT_GEMV ?? best);
      const q = k.quant.QuantLinear.fromWeight(k.tensor(Float32Array.from(seeded(4 * 64, 2)), { shape: [4, 64], backend: 'cpu' }), null, { type: 'q4' });
      const xs = Float32Array.from(seeded(2 * 64, 3));
      xs[5] = NaN;
      xs[64 + 9] = Infinity;
      const y = k.tidy(() => q.applyWeight(k.tensor(xs, { shape: [2, 64], backend: 'cpu' })).toFloat32Array());
      for (let n = 0; n < 4; n++) assert.ok(Number.isNaN(y[n]), `row 0 output ${n}: ${y[n]} (NaN in x)`);
      for (let n = 0; n < 4; n++) assert.ok(!Number.isFinite(y[4 + n]), `row 1 output ${n}: ${y[4 + n]} (inf in x)`);
      q.dispose();
    });

    test('KESTREL_QUANT_GEMV with an unknown path is an error naming the choices', () => {
      assert.throws(() => runChild(fileURLToPath(import.meta.url), { KESTREL_QUANT_GEMV: 'vnni9', KESTREL_GEMV_INT8_CHILD: '1' }), /KESTREL_QUANT_GEMV=vnni9: expected avx512vnni, avxvnni, avx2, scalar, float or auto/);
    });
  });
