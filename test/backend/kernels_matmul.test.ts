// The matmul kernel of every native device through the kernel table (cpu: native/gemm.cc, cuda:
// cuBLASLt or the emulator's host GEMM) against the float64 reference on the same float32 values:
// M, N, K in {1, 7, 33, 257} with transposed operands, broadcast batches (stride 0), batches with
// gaps and batch dims that do not collapse, accumulation, half-precision operands where the
// device takes them, and bad arguments. (test/backend/cpu_matmul.test.ts covers the CPU GEMM's
// packing paths and SIMD levels through the raw addon.)
//
// Tolerance: float32 accumulation over K terms of size <= 1: |err| <= K * 2^-24 * sum|a||b|,
// bounded here by atol 1e-5 * K plus rtol 1e-5; bfloat16 inputs round to 8 bits (rtol 1e-2).
import { ALL_DEVICES, type Device, skipUnless } from '../devices.js';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as k from '../../src/index.js';
import { assertClose, seeded } from '../helpers.js';

const SIZES = [1, 7, 33, 257];

/** A [..., r, c] float32 operand on `device` (stored transposed when `trans`), and the same values in float64 on ref. */
function operand(device: Device, batch: number[], r: number, c: number, trans: boolean, seed: number, dtype: k.DType = 'float32') {
  const n = [...batch, r, c].reduce((p, x) => p * x, 1);
  const vals = seeded(n, seed);
  const ref = k.tensor(vals, { shape: [...batch, r, c], dtype: 'float64', backend: 'ref' }).to(dtype).to('float64');
  const stored = trans ? ref.transpose(-1, -2).contiguous() : ref;
  const dev = stored.to(dtype).to(device);
  return { dev: trans ? dev.transpose(-1, -2) : dev, ref };
}

function gemm(device: Device, a: k.Tensor, b: k.Tensor, out: k.Tensor, accumulate = false): k.Tensor {
  k.getBackend(device).kernels.matmul(a, b, out, accumulate);
  return out;
}

function check(device: Device, M: number, N: number, K: number, ta: boolean, tb: boolean, dtype: k.DType = 'float32'): void {
  k.tidy(() => {
    const A = operand(device, [], M, K, ta, 1 + M, dtype);
    const B = operand(device, [], K, N, tb, 2 + N, dtype);
    const got = gemm(device, A.dev, B.dev, k.empty([M, N], dtype, { backend: device }));
    const want = k.matmul(A.ref, B.ref);
    const tol = dtype === 'float32' ? { atol: 1e-5 * K, rtol: 1e-5 } : { atol: 1e-2 * Math.sqrt(K), rtol: 1e-2 };
    assertClose(got, want, { ...tol, what: `${device} ${dtype} M${M} N${N} K${K}${ta ? ' Aᵀ' : ''}${tb ? ' Bᵀ' : ''}` });
  });
}

for (const device of ALL_DEVICES)
  describe(`${device} matmul kernel`, { skip: skipUnless(device) }, () => {
    test('every M, N, K in {1, 7, 33, 257} (at most two of them 257)', () => {
      for (const M of SIZES)
        for (const N of SIZES)
          for (const K of SIZES)
            if ([M, N, K].filter((x) => x === 257).length <= 2) check(device, M, N, K, false, false);
    });
    test('transposed operands', () => {
      for (const [M, N, K] of [[7, 33, 257], [257, 1, 33], [1, 7, 7], [33, 257, 1]])
        for (const ta of [false, true]) for (const tb of [false, true]) check(device, M, N, K, ta, tb);
    });
    // x of a few rows times a Linear's weight read transposed: cuda's GEMV kernel (gemv.cu) for
    // M <= 4, with 16-byte loads when x, W and their rows are aligned and scalar loads otherwise
    test('few rows times a transposed weight (decoding shapes): aligned, unaligned, accumulating', () => {
      const dtypes: k.DType[] = k.getBackend(device).halfMatmul ? ['float32', 'bfloat16', 'float16'] : ['float32'];
      for (const dtype of dtypes)
        for (const M of [1, 2, 3, 4])
          for (const K of [1, 7, 8, 64, 264, 1000])
            for (const N of [1, 33, 257]) check(device, M, N, K, false, true, dtype);
      k.tidy(() => {
        // unaligned: x starts one element into its storage, W's rows are 9 elements apart
        const xs = operand(device, [], 3, 65, false, 31);
        const ws = operand(device, [], 40, 9 * 8, false, 32);
        const x = xs.dev.narrow(1, 1, 64);
        const w = ws.dev.narrow(1, 0, 64).t(); // [64, 40] read transposed, row stride 72
        const got = gemm(device, x, w, k.empty([3, 40], 'float32', { backend: device }));
        assertClose(got, k.matmul(xs.ref.narrow(1, 1, 64), ws.ref.narrow(1, 0, 64).t()), { atol: 1e-4, rtol: 1e-5, what: 'unaligned gemv' });
        const acc = gemm(device, x, w, got.clone(), true);
        assertClose(acc, k.mul(k.matmul(xs.ref.narrow(1, 1, 64), ws.ref.narrow(1, 0, 64).t()), 2), { atol: 2e-4, rtol: 1e-5, what: 'accumulating gemv' });
      });
    });

    test('batches: broadcast (stride 0), gaps, and batch dims that do not collapse', () => {
      k.tidy(() => {
        const A = operand(device, [2, 3], 7, 5, false, 3);
        const B = operand(device, [1, 3], 5, 4, true, 4);
        // B broadcast over the first batch dim with stride 0
        const bd = B.dev.expand([2, 3, 5, 4]);
        const got = gemm(device, A.dev, bd, k.empty([2, 3, 7, 4], 'float32', { backend: device }));
        assertClose(got, k.matmul(A.ref, B.ref.expand([2, 3, 5, 4])), { atol: 1e-5, rtol: 1e-5, what: 'broadcast batch' });
        // a batch with gaps (narrowed) and permuted batch dims
        const C = operand(device, [4, 3], 6, 5, false, 5);
        const cd = C.dev.narrow(0, 1, 2).permute([1, 0, 2, 3]);
        const D = operand(device, [3, 2], 5, 3, false, 6);
        const out = gemm(device, cd, D.dev, k.empty([3, 2, 6, 3], 'float32', { backend: device }));
        assertClose(out, k.matmul(C.ref.narrow(0, 1, 2).permute([1, 0, 2, 3]), D.ref), { atol: 1e-5, rtol: 1e-5, what: 'gaps + permuted batch' });
      });
    });
    test('accumulate adds into out', () => {
      k.tidy(() => {
        const A = operand(device, [], 33, 7, false, 7);
        const B = operand(device, [], 7, 9, true, 8);
        const C = operand(device, [], 33, 9, false, 9);
        const out = gemm(device, A.dev, B.dev, C.dev.contiguous(), true);
        assertClose(out, k.add(k.matmul(A.ref, B.ref), C.ref), { atol: 1e-5, rtol: 1e-5, what: 'accumulate' });
        const empty = gemm(device, k.zeros([3, 0], { backend: device }), k.zeros([0, 4], { backend: device }), k.full([3, 4], 5, { backend: device }));
        assert.deepEqual(empty.toArray(), Array.from({ length: 3 }, () => [0, 0, 0, 0]), 'K = 0 writes zeros');
      });
    });
    // only where the kernel takes half operands itself (Backend.halfMatmul); elsewhere the op upcasts them
    if (k.getBackend(device).halfMatmul) {
      test('bfloat16 and float16 operands (float32 accumulation)', () => {
        for (const dtype of ['bfloat16', 'float16'] as const)
          for (const [M, N, K] of [[7, 33, 257], [33, 1, 7], [257, 7, 33]]) for (const tb of [false, true]) check(device, M, N, K, false, tb, dtype);
      });
      test('half operands into a float32 out, also accumulating (never rounded to half)', () => {
        for (const dtype of ['bfloat16', 'float16'] as const)
          for (const M of [33, 2]) // 2 rows: the GEMV kernel's half -> float32 variant
          k.tidy(() => {
            const A = operand(device, [], M, 257, false, 11, dtype);
            const B = operand(device, [], 257, 7, true, 12, dtype);
            const C = operand(device, [], M, 7, false, 13);
            const got = gemm(device, A.dev, B.dev, C.dev.contiguous(), true);
            assert.equal(got.dtype, 'float32');
            // float32 accumulation of exactly representable products: float32 tolerances
            assertClose(got, k.add(k.matmul(A.ref, B.ref), C.ref), { atol: 1e-5 * 257, rtol: 1e-5, what: `${dtype} -> float32 accumulate` });
          });
      });
    }
    // the optional bias epilogue (cpu: float32, the bias written into each block of out in cache just
    // before its products; cuda: cuBLASLt's BIAS epilogue, the emulator's host GEMM): out = a b + bias;
    // false and nothing written where it does not take the operands (the op then adds the bias itself)
    const bias = k.getBackend(device).kernels.matmulBias?.bind(k.getBackend(device).kernels);
    if (bias)
      test('a b + bias in one GEMM (bias epilogue), and the operands it declines', () => {
        const cuda = device === 'cuda';
        const dtypes: [k.DType, k.DType][] = cuda
          ? [['float32', 'float32'], ['bfloat16', 'bfloat16'], ['float16', 'float16'], ['bfloat16', 'float32']]
          : [['float32', 'float32']];
        // cpu: 1 and 5 rows take the unpacked small-M kernels, the rest packed blocks: several k blocks
        // (K 257, 300), several column blocks (N 1100) and several row blocks (M 2100)
        const shapes = cuda
          ? [[5, 7, 33], [33, 257, 7], [257, 1, 257], [7, 33, 1]]
          : [[1, 7, 33], [5, 257, 7], [33, 33, 257], [257, 7, 257], [257, 1, 1], [40, 1100, 300], [2100, 33, 20]];
        for (const [dtype, outDtype] of dtypes)
          for (const [M, N, K] of shapes)
            for (const tb of [false, true])
              k.tidy(() => {
                const A = operand(device, [], M, K, false, 21 + M, dtype);
                const B = operand(device, [], K, N, tb, 22 + N, dtype);
                const b = operand(device, [], 1, N, false, 23, outDtype);
                const out = k.full([M, N], NaN, { dtype: outDtype, backend: device });
                assert.equal(bias(A.dev, B.dev, b.dev.reshape([N]), out), true, `${dtype} M${M} N${N} K${K}: taken`);
                const tol = dtype === 'float32' || outDtype === 'float32' ? { atol: 1e-5 * K, rtol: 1e-5 } : { atol: 1e-2 * Math.sqrt(K), rtol: 1e-2 };
                assertClose(out, k.add(k.matmul(A.ref, B.ref), b.ref), { ...tol, what: `${dtype}->${outDtype} M${M} N${N} K${K}${tb ? ' Bᵀ' : ''} + bias` });
              });
        k.tidy(() => {
          const [M, N, K] = [7, 8, 5];
          const a = operand(device, [], M, K, false, 31).dev, b = operand(device, [], K, N, true, 32).dev;
          const vec = k.tensor(seeded(N + 1, 33), { shape: [N + 1], backend: device });
          const out = k.full([M, N], 7, { backend: device });
          const declined: [string, () => boolean][] = [
            ['a bias of another dtype', () => bias(a, b, vec.narrow(0, 0, N).to('float64'), out)],
            ['batched operands', () => bias(a.reshape([1, M, K]), b.reshape([1, K, N]), vec.narrow(0, 0, N), out.reshape([1, M, N]))],
            ...(cuda
              ? ([
                ['4 rows (the GEMV)', () => bias(a.narrow(0, 0, 4), b, vec.narrow(0, 0, N), out.narrow(0, 0, 4))],
                ['a bias not 16-byte aligned', () => bias(a, b, vec.narrow(0, 1, N), out)],
              ] as [string, () => boolean][])
              : ([['bfloat16 operands', () => bias(a.to('bfloat16'), b.to('bfloat16'), vec.narrow(0, 0, N), out)]] as [string, () => boolean][])),
          ];
          for (const [why, f] of declined) assert.equal(f(), false, why);
          assert.deepEqual(out.toArray(), Array.from({ length: M }, () => new Array(N).fill(7)), 'nothing written when declined');
        });
      });
    test('bad arguments are errors', () => {
      const t = (shape: number[], dtype: k.DType = 'float32') => k.zeros(shape, { dtype, backend: device });
      const kern = k.getBackend(device).kernels;
      assert.throws(() => kern.matmul(t([2, 3]), t([4, 5]), t([2, 5]), false), /matmul/);
      assert.throws(() => kern.matmul(t([2, 3]), t([3, 5], 'float64'), t([2, 5]), false), /matmul: dtype/);
      assert.throws(() => kern.matmul(t([2, 3]), t([3, 5]), t([5, 2]).t(), false), /matmul: out/);
      assert.throws(() => kern.matmul(t([2, 2, 3]), t([3, 3, 5]), t([2, 2, 5]), false), /matmul: batch dims differ/);
    });
  });
