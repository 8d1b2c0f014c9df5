// The quantized matmul kernels (native/quant.cc) against the float64 reference backend
// (src/backend/ref/quant.ts), forward (y = x Wᵀ) and input gradient (dx = dy W), for nf4, fp4,
// nf4 with double quantization and int8, on odd shapes: M of 1, 7, 33, 257; N * K odd (the last
// byte holds one code) and not a multiple of the block (a partial last block); K below and above
// the per-thread column split; block sizes 32..4096. Then the fused kernel against
// dequantize-then-matmul on the same backend (the same float32 products, only the summation
// order differs: within 1e-5 of the output's largest magnitude), strided inputs, and bad input.
// The AVX2 and scalar bodies run in child processes with KESTREL_SIMD set.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as k from '../../src/index.js';
import { nativeLoadError } from '../../src/backend/addon.js';
import { quantLinear } from '../../src/ops/fused/quant_linear.js';
import type { QuantLinearState } from '../../src/quant/quant_linear.js';
import { assertClose, runChild, seeded, seededTensor } from '../helpers.js';

const skip = k.hasBackend('cpu') ? false : `cpu backend not built (${nativeLoadError()})`;
const CHILD = process.env.KESTREL_QUANT_CHILD === '1';
const VS_REF = { atol: 1e-5, rtol: 1e-4 }; // float32 sums of up to 300 products against float64

type Format = { type: k.quant.QuantType; blockSize?: number; doubleQuant?: boolean };

/** A quantized [N, K] weight from seeded values (the state both backends are built from). */
function state(N: number, K: number, f: Format, seed = 7): QuantLinearState {
  const w = Float32Array.from(seeded(N * K, seed, -0.5, 0.5));
  if (f.type === 'int8') {
    const q = k.quant.quantizeInt8(w, [N, K]);
    return { type: 'int8', inFeatures: K, outFeatures: N, data: q.data, scales: q.scb };
  }
  const q = k.quant.quantize4bit(w, [N, K], { type: f.type, blockSize: f.blockSize, doubleQuant: f.doubleQuant });
  return { type: f.type, inFeatures: K, outFeatures: N, data: q.packed, scales: q.absmax, blockSize: q.blockSize };
}

const name = (f: Format) => `${f.type}${f.doubleQuant ? '+dq' : ''}${f.blockSize ? `/${f.blockSize}` : ''}`;

function vsRef(f: Format, M: number, N: number, K: number): void {
  const s = state(N, K, f);
  const qc = new k.quant.QuantLinear(s, { backend: 'cpu' });
  const qr = new k.quant.QuantLinear(s, { backend: 'ref' });
  const what = `${name(f)} M=${M} N=${N} K=${K}`;
  k.tidy(() => {
    const x = seededTensor([M, K], 'float32', 'cpu', M + K);
    const g = seededTensor([M, N], 'float32', 'cpu', M + N + 1);
    assertClose(qc.applyWeight(x), qr.applyWeight(x.to('ref')), { ...VS_REF, what: `${what} forward` });
    assertClose(qc.applyWeightTransposed(g), qr.applyWeightTransposed(g.to('ref')), { ...VS_REF, what: `${what} dx` });
  });
  qc.dispose();
  qr.dispose();
}

const FORMATS: Format[] = [{ type: 'nf4' }, { type: 'fp4' }, { type: 'nf4', doubleQuant: true }, { type: 'int8' }];
// N * K = 2541 (odd: the last byte holds one code; 2541 % 64 = 45: a partial last block); K = 77
// splits across threads in the backward, K = 7 does not.
const SHAPES: [number, number][] = [[33, 77], [1, 7], [257, 7], [40, 300]];

test('quantized matmul matches the reference on odd shapes, every format', { skip }, () => {
  for (const f of FORMATS)
    for (const M of [1, 7, 33, 257])
      for (const [N, K] of SHAPES) if (M < 257 || K < 300) vsRef(f, M, N, K); // 257 x 40 x 300 is slow on the reference
});

test('every block size from 32 to 4096, with and without double quantization', { skip }, () => {
  for (const blockSize of [32, 64, 128, 256, 1024, 4096])
    for (const doubleQuant of [false, true]) vsRef({ type: 'nf4', blockSize, doubleQuant }, 5, 97, 65);
});

if (!CHILD) {
  test('fused kernel equals dequantize-then-matmul within 1e-5 relative (multi-tile shapes)', { skip }, () => {
    // N = 600 gives several tiles per thread; K = 700 splits the backward's columns
    for (const f of FORMATS)
      for (const [M, N, K] of [[1, 600, 700], [8, 600, 700], [96, 600, 130]]) {
        const q = new k.quant.QuantLinear(state(N, K, f), { backend: 'cpu' });
        k.tidy(() => {
          const w = q.dequantize();
          const x = seededTensor([M, K], 'float32', 'cpu', 3);
          const g = seededTensor([M, N], 'float32', 'cpu', 4);
          const what = `${name(f)} [${M}, ${N}, ${K}]`;
          const scaled = (want: k.Tensor) => ({ atol: 1e-5 * want.abs().max().item(), rtol: 1e-5 });
          const [y, dx] = [k.matmul(x, w.t()), k.matmul(g, w)];
          assertClose(q.applyWeight(x), y, { ...scaled(y), what: `${what} forward` });
          assertClose(q.applyWeightTransposed(g), dx, { ...scaled(dx), what: `${what} dx` });
        });
        q.dispose();
      }
  });

  test('non-contiguous inputs: strided rows go in directly, other layouts are made contiguous', { skip }, () => {
    const N = 33;
    const K = 77;
    for (const backend of ['cpu', 'ref'] as const) {
      const q = new k.quant.QuantLinear(state(N, K, { type: 'nf4' }), { backend });
      k.tidy(() => {
        const wide = seededTensor([9, K + 10], 'float32', backend, 11);
        const rows = wide.narrow(1, 4, K); // [9, K] with row stride K + 10
        assert.equal(rows.isContiguous(), false);
        assertClose(q.applyWeight(rows), q.applyWeight(rows.contiguous()), { atol: 0, rtol: 0, what: `${backend} strided rows` });
        const cols = seededTensor([K, 6], 'float32', backend, 12).t(); // [6, K], unit stride in dim 0
        assertClose(q.applyWeight(cols), q.applyWeight(cols.contiguous()), { atol: 0, rtol: 0, what: `${backend} transposed` });
        const x3 = seededTensor([2, 3, K], 'float32', backend, 13);
        assert.deepEqual(q.applyWeight(x3).shape, [2, 3, N]);
        const g = seededTensor([N, 4], 'float32', backend, 14).t();
        assertClose(q.applyWeightTransposed(g), q.applyWeightTransposed(g.contiguous()), { atol: 0, rtol: 0, what: `${backend} strided dy` });
      });
      q.dispose();
    }
  });

  test('bad input is a clear error', { skip }, () => {
    const s = state(8, 32, { type: 'nf4' });
    const q = new k.quant.QuantLinear(s, { backend: 'cpu' });
    k.tidy(() => {
      assert.throws(() => q.forward(k.zeros([3, 31])), /quantLinear: input \[3, 31\] must end in the weight's in_features 32/);
      assert.throws(() => q.forward(k.scalar(1)), /quantLinear: input \[\] must end/);
      assert.throws(() => q.applyWeightTransposed(k.zeros([2, 32])), /gradient \[2, 32\] must end in the weight's out_features 8/);
      assert.throws(() => q.forward(k.zeros([3, 32], { backend: 'ref' })), /different backends/);
      // the native kernel validates what it is handed, whatever the TypeScript layer checked
      const w = { kind: '4bit' as const, N: 8, K: 32, data: q.qweight, code: q.code, blockSize: 48, scales: q.scales, nested: null };
      assert.throws(() => quantLinear(k.zeros([3, 32]), w), /quant_linear: blockSize 48 must be a power of two/);
      assert.throws(() => quantLinear(k.zeros([3, 32]), { ...w, blockSize: 64, N: 9 }), /packed weight \[128\] must have 144 elements/);
      assert.throws(() => quantLinear(k.zeros([3, 32]), { ...w, blockSize: 64, code: q.scales }), /code table \[4\] must have 16 elements/);
      assert.throws(() => quantLinear(k.zeros([3, 32]), { ...w, kind: 'int8', code: null }), /int8 weight must be int8, got uint8/);
      const kernels = k.getBackend('cpu').kernels;
      assert.throws(() => kernels.quantLinear(k.zeros([2, 3, 32]), { ...w, blockSize: 64 }, k.zeros([6, 8])), /x \[2,3,32\] must be 2-d/);
      assert.throws(() => kernels.quantLinear(k.zeros([3, 32]), { ...w, blockSize: 64 }, k.zeros([3, 9])), /out \[3,9\] must be \[3, 8\]/);
      assert.throws(() => kernels.quantLinearBackward(k.zeros([3, 8], { dtype: 'float64' }), { ...w, blockSize: 64 }, k.zeros([3, 32])), /dy must be float32, got float64/);
    });
    assert.throws(() => new k.quant.QuantLinear({ ...s, type: 'int4' as 'nf4' }), /unsupported type "int4"/);
    assert.throws(() => new k.quant.QuantLinear({ ...s, blockSize: 48 }), /blockSize must be a power of two in \[16, 4096\], got 48/);
    assert.throws(() => new k.quant.QuantLinear({ ...s, data: s.data.slice(1) }), /data must be a Uint8Array of 128 values, got Uint8Array\(127\)/);
    assert.throws(() => new k.quant.QuantLinear({ ...s, scales: new Float32Array(3) }), /expected 4 absmax values, got 3/);
    q.dispose();
  });

  for (const simd of ['avx2', 'scalar'])
    test(`the ${simd} bodies agree with the reference (child process)`, { skip }, () => {
      runChild(fileURLToPath(import.meta.url), { KESTREL_SIMD: simd, KESTREL_QUANT_CHILD: '1' }, 120_000);
    });
}
