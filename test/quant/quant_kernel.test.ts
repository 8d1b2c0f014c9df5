// The quantized matmul kernels of every native device (native/quant.cc, native/cuda/kernels/quant.cu)
// against the float64 reference backend (src/backend/ref/quant.ts), forward (y = x Wᵀ) and input
// gradient (dx = dy W), for nf4, fp4, nf4 with double quantization and int8, on odd shapes: M of 1,
// 7, 33, 257; N * K odd (the last byte holds one code) and not a multiple of the block (a partial
// last block); K below and above the CPU's per-thread column split; block sizes 32..4096. Then the
// fused kernel against dequantize-then-matmul on the same device (the same float32 products, only
// the summation order differs: within 1e-5 of the output's largest magnitude), strided inputs, and
// bad input. cuda runs each case twice: as shipped (GEMV for M <= 8, one decoded tile) and with the
// GEMV off and tiles of a few rows (the multi-tile GEMM path). The CPU's AVX2 and scalar bodies run
// in child processes with KESTREL_SIMD set.
import { ALL_DEVICES, type Device, skipUnless } from '../devices.js';
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as k from '../../src/index.js';
import { quantTuning } from '../../src/backend/cuda/kernels/quant.js';
import { quantLinear } from '../../src/ops/fused/quant_linear.js';
import type { QuantLinearState } from '../../src/quant/quant_linear.js';
import { assertClose, runChild, seeded, seededTensor } from '../helpers.js';

// float32 x throughout (and in the children, which inherit it): int8 weights' decode GEMV would
// otherwise quantize x to int8 (quant_gemv_int8.cc, checked in quant_gemv_int8.test.ts)
process.env.KESTREL_QUANT_GEMV = 'float';
const CHILD = process.env.KESTREL_QUANT_CHILD === '1';
const VS_REF = { atol: 1e-5, rtol: 1e-4 }; // float32 sums of up to 300 products against float64

type Format = { type: k.quant.FourBitType | 'int8'; blockSize?: number; doubleQuant?: boolean };

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
const data = (shape: number[], where: Device | 'ref', seed: number) => seededTensor(shape, 'float32', where, seed);

const FORMATS: Format[] = [{ type: 'nf4' }, { type: 'fp4' }, { type: 'nf4', doubleQuant: true }, { type: 'int8' }];
// N * K = 2541 (odd: the last byte holds one code; 2541 % 64 = 45: a partial last block); K = 77
// splits across threads in the CPU's backward, K = 7 does not; K = 64 takes the GEMV's word path.
const SHAPES: [number, number][] = [[33, 77], [1, 7], [257, 7], [40, 300], [9, 64]];

/** cuda's paths: as shipped, then GEMV off with tiles of 5 rows of 300 floats. */
const TUNINGS = [{ label: '', tileFloats: quantTuning.tileFloats, gemvRows: quantTuning.gemvRows }, { label: ' (gemm tiles)', tileFloats: 1500, gemvRows: 0 }];

function suite(device: Device, tuning: (typeof TUNINGS)[number]): void {
  const vsRef = (f: Format, M: number, N: number, K: number): void => {
    const s = state(N, K, f);
    const qd = new k.quant.QuantLinear(s, { backend: device });
    const qr = new k.quant.QuantLinear(s, { backend: 'ref' });
    const what = `${device}${tuning.label} ${name(f)} M=${M} N=${N} K=${K}`;
    k.tidy(() => {
      const x = data([M, K], device, M + K);
      const g = data([M, N], device, M + N + 1);
      assertClose(qd.applyWeight(x), qr.applyWeight(x.to('ref')), { ...VS_REF, what: `${what} forward` });
      assertClose(qd.applyWeightTransposed(g), qr.applyWeightTransposed(g.to('ref')), { ...VS_REF, what: `${what} dx` });
    });
    qd.dispose();
    qr.dispose();
  };

  test('quantized matmul matches the reference on odd shapes, every format', () => {
    for (const f of FORMATS)
      for (const M of [1, 7, 33, 257])
        for (const [N, K] of SHAPES) if (M < 257 || K < 300) vsRef(f, M, N, K); // 257 x 40 x 300 is slow on the reference
  });

  test('every block size from 32 to 4096, with and without double quantization', () => {
    for (const blockSize of [32, 64, 128, 256, 1024, 4096])
      for (const doubleQuant of [false, true])
        for (const [M, K] of [[2, 65], [9, 65], [3, 128]]) vsRef({ type: 'nf4', blockSize, doubleQuant }, M, 97, K);
  });

  if (CHILD) return;
  test('fused kernel equals dequantize-then-matmul within 1e-5 relative (multi-tile shapes)', () => {
    // N = 600 gives several tiles per CPU thread; K = 700 splits the backward's columns
    for (const f of FORMATS)
      for (const [M, N, K] of [[1, 600, 700], [8, 600, 700], [96, 600, 130]]) {
        const q = new k.quant.QuantLinear(state(N, K, f), { backend: device });
        k.tidy(() => {
          const w = q.dequantize();
          const x = data([M, K], device, 3);
          const g = data([M, N], device, 4);
          const what = `${device}${tuning.label} ${name(f)} [${M}, ${N}, ${K}]`;
          const scaled = (want: k.Tensor) => ({ atol: 1e-5 * want.abs().max().item(), rtol: 1e-5 });
          const [y, dx] = [k.matmul(x, w.t()), k.matmul(g, w)];
          assertClose(q.applyWeight(x), y, { ...scaled(y), what: `${what} forward` });
          assertClose(q.applyWeightTransposed(g), dx, { ...scaled(dx), what: `${what} dx` });
        });
        q.dispose();
      }
  });

  // Where the GEMM takes half operands (Backend.halfMatmul: cuda, cpu), bf16/fp16 inputs multiply W
  // decoded to their dtype (bitsandbytes' GPU path): y equals the float64 product of the rounded x
  // and the rounded W, within float32 accumulation plus the one rounding of y (and of dx). cuda's
  // GEMV of a few rows (decoding) keeps W in float32: its reference is the unrounded W.
  if (k.getBackend(device).halfMatmul)
    test('bf16 and fp16 inputs: products of W decoded to their dtype, forward and dx, GEMV and tiles', () => {
      for (const dtype of ['bfloat16', 'float16'] as const)
        for (const f of FORMATS)
          for (const [M, N, K] of [[1, 33, 77], [7, 40, 300], [33, 97, 65]]) {
            const q = new k.quant.QuantLinear(state(N, K, f), { backend: device });
            k.tidy(() => {
              const r = (t: k.Tensor): k.Tensor => t.to(dtype).to('ref').to('float64');
              const gemv = device === 'cuda' && M <= Math.min(tuning.gemvRows, 8);
              const wr = gemv ? q.dequantize().to('ref').to('float64') : r(q.dequantize());
              const x = data([M, K], device, 21).to(dtype);
              const g = data([M, N], device, 22).to(dtype);
              const [y, dx] = [q.applyWeight(x), q.applyWeightTransposed(g)];
              assert.deepEqual([y.dtype, dx.dtype], [dtype, dtype]);
              const tol = { atol: 1e-3, rtol: dtype === 'bfloat16' ? 8e-3 : 1e-3 };
              const what = `${device}${tuning.label} ${dtype} ${name(f)} [${M}, ${N}, ${K}]`;
              assertClose(y, k.matmul(r(x), wr.t()), { ...tol, what: `${what} forward` });
              assertClose(dx, k.matmul(r(g), r(q.dequantize())), { ...tol, what: `${what} dx` });
            });
            q.dispose();
          }
    });

  test('non-contiguous inputs: strided rows go in directly, other layouts are made contiguous', () => {
    const N = 33;
    const K = 77;
    const q = new k.quant.QuantLinear(state(N, K, { type: 'nf4' }), { backend: device });
    k.tidy(() => {
      for (const rowsN of [3, 9]) {
        const wide = data([rowsN, K + 10], device, 11);
        const rows = wide.narrow(1, 4, K); // [rowsN, K] with row stride K + 10
        assert.equal(rows.isContiguous(), false);
        assertClose(q.applyWeight(rows), q.applyWeight(rows.contiguous()), { atol: 0, rtol: 0, what: `${device} strided rows` });
      }
      const cols = data([K, 6], device, 12).t(); // [6, K], unit stride in dim 0
      assertClose(q.applyWeight(cols), q.applyWeight(cols.contiguous()), { atol: 0, rtol: 0, what: `${device} transposed` });
      const x3 = data([2, 3, K], device, 13);
      assert.deepEqual(q.applyWeight(x3).shape, [2, 3, N]);
      const g = data([N, 4], device, 14).t();
      assertClose(q.applyWeightTransposed(g), q.applyWeightTransposed(g.contiguous()), { atol: 0, rtol: 0, what: `${device} strided dy` });
      // rows that overlap (stride 0) through the kernel itself (12 rows and 1 may take different paths)
      const one = data([1, K], device, 15);
      const kern = k.getBackend(device).kernels;
      const w = { kind: '4bit' as const, N, K, data: q.qweight, code: q.code, blockSize: q.blockSize, scales: q.scales, nested: null };
      const y = k.zeros([12, N], { backend: device });
      kern.quantLinear(one.expand([12, K]), w, y);
      assertClose(y, q.applyWeight(one).expand([12, N]), { atol: 1e-6, rtol: 1e-5, what: `${device} stride-0 rows` });
    });
    q.dispose();
  });

  test('bad input is a clear error', () => {
    const s = state(8, 32, { type: 'nf4' });
    const q = new k.quant.QuantLinear(s, { backend: device });
    const z = (shape: number[], dtype: k.DType = 'float32') => k.zeros(shape, { dtype, backend: device });
    k.tidy(() => {
      assert.throws(() => q.forward(z([3, 31])), /quantLinear: input \[3, 31\] must end in the weight's in_features 32/);
      assert.throws(() => q.forward(k.scalar(1).to(device)), /quantLinear: input \[\] must end/);
      assert.throws(() => q.applyWeightTransposed(z([2, 32])), /gradient \[2, 32\] must end in the weight's out_features 8/);
      assert.throws(() => q.forward(k.zeros([3, 32], { backend: 'ref' })), /different backends/);
      // the kernel validates what it is handed, whatever the TypeScript layer checked
      const w = { kind: '4bit' as const, N: 8, K: 32, data: q.qweight, code: q.code, blockSize: 48, scales: q.scales, nested: null };
      assert.throws(() => quantLinear(z([3, 32]), w), /quant_linear: blockSize 48 must be a power of two/);
      assert.throws(() => quantLinear(z([3, 32]), { ...w, blockSize: 64, N: 9 }), /packed weight \[128\] must have 144 elements/);
      assert.throws(() => quantLinear(z([3, 32]), { ...w, blockSize: 64, code: q.scales }), /code table \[4\] must have 16 elements/);
      assert.throws(() => quantLinear(z([3, 32]), { ...w, kind: 'int8', code: null }), /int8 weight must be int8, got uint8/);
      const kernels = k.getBackend(device).kernels;
      assert.throws(() => kernels.quantLinear(z([2, 3, 32]), { ...w, blockSize: 64 }, z([6, 8])), /x \[2,3,32\] must be 2-d/);
      assert.throws(() => kernels.quantLinear(z([3, 32]), { ...w, blockSize: 64 }, z([3, 9])), /out \[3,9\] must be \[3, 8\]/);
      assert.throws(() => kernels.quantLinearBackward(z([3, 8], 'float64'), { ...w, blockSize: 64 }, z([3, 32])), /dy must be float32(, bfloat16 or float16)?, got float64/);
    });
    q.dispose();
  });
}

const devices: readonly Device[] = CHILD ? ['cpu'] : ALL_DEVICES;
for (const device of devices)
  for (const tuning of device === 'cuda' ? TUNINGS : TUNINGS.slice(0, 1))
    describe(`quantized matmul on ${device}${tuning.label}`, { skip: skipUnless(device) }, () => {
      const saved = { ...quantTuning };
      before(() => Object.assign(quantTuning, { tileFloats: tuning.tileFloats, gemvRows: tuning.gemvRows }));
      after(() => Object.assign(quantTuning, saved));
      suite(device, tuning);
    });

if (!CHILD)
  describe('quantized matmul: the QuantLinear checks and the CPU SIMD bodies', { skip: skipUnless('cpu') }, () => {
    test('bad states', () => {
      const s = state(8, 32, { type: 'nf4' });
      assert.throws(() => new k.quant.QuantLinear({ ...s, type: 'int4' as 'nf4' }), /unsupported type "int4"/);
      assert.throws(() => new k.quant.QuantLinear({ ...s, blockSize: 48 }), /blockSize must be a power of two in \[16, 4096\], got 48/);
      assert.throws(() => new k.quant.QuantLinear({ ...s, data: s.data.slice(1) }), /data must be a Uint8Array of 128 values, got Uint8Array\(127\)/);
      assert.throws(() => new k.quant.QuantLinear({ ...s, scales: new Float32Array(3) }), /expected 4 absmax values, got 3/);
    });
    for (const simd of ['avx2', 'scalar'])
      test(`the ${simd} bodies agree with the reference (child process)`, () => {
        runChild(fileURLToPath(import.meta.url), { KESTREL_SIMD: simd, KESTREL_QUANT_CHILD: '1' }, 120_000);
      });
  });
