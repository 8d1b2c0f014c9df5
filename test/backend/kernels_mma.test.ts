// The tensor-core wrappers of native/cuda/kernels/common.cuh on their own (mma_check.cu: one warp,
// D = C + A B for a 16x16x16 product): fragments gathered by hand from the PTX layouts, through
// ldmatrix (.trans for a row-major B, plain for Bᵀ) from cp.async-staged shared memory, for bfloat16
// and float16, plus the float -> 16-bit packing (round to nearest even). The operands are small
// multiples of 1/4, so every product and sum is exact in float32 and the check is equality: any
// misplaced element of a fragment shows. cuda only (the GPU, or the emulator's warp exchange).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { skipUnless } from '../devices.js';
import * as k from '../../src/index.js';
import { launch, newParams } from '../../src/backend/cuda/launch.js';
import { cudaKernel } from '../../src/backend/cuda/modules.js';
import { f32ToBf16, f32ToF16 } from '../../src/tensor/half.js';
import { seeded } from '../helpers.js';

/** Small exact values: multiples of 1/4 in [-2, 2], never a pattern a transposition would keep. */
const exact = (n: number, seed: number): Float32Array => Float32Array.from(seeded(n, seed, -2, 2), (x) => Math.round(x * 4) / 4);

describe('tensor-core mma / ldmatrix / cp.async wrappers on cuda', { skip: skipUnless('cuda') }, () => {
  for (const [dtype, name, round] of [['bfloat16', 'bf16', f32ToBf16], ['float16', 'f16', f32ToF16]] as const)
    test(`${dtype}: D = C + A B three ways, every element exact; pack2 rounds as the CPU does`, () => {
      const [A, B, C] = [exact(256, 1), exact(256, 2), exact(256, 3)];
      const want = new Float64Array(256);
      for (let i = 0; i < 16; i++)
        for (let n = 0; n < 16; n++) {
          let s = C[i * 16 + n];
          for (let c = 0; c < 16; c++) s += A[i * 16 + c] * B[c * 16 + n];
          want[i * 16 + n] = s;
        }
      const cPack = Float32Array.from(seeded(256, 4, -3, 3)); // not exact: checks the rounding
      k.tidy(() => {
        const a = k.tensor(A, { shape: [16, 16], dtype, backend: 'cuda' });
        const b = k.tensor(B, { shape: [16, 16], dtype, backend: 'cuda' });
        const c = k.tensor(C, { shape: [16, 16], backend: 'cuda' });
        const cp = k.tensor(cPack, { shape: [256], backend: 'cuda' });
        const d = k.empty([3, 16, 16], 'float32', { backend: 'cuda' });
        const packed = k.empty([128], 'int32', { backend: 'cuda' });
        const p = newParams().view_(a).view_(b).view_(c).view_(d).view_(packed);
        launch(cudaKernel('mma_check', `mma_check_${name}`), p, { grid: 1, block: 32 });
        const got = d.toFloat32Array();
        ['by hand', 'ldmatrix + trans', 'ldmatrix of Bᵀ'].forEach((way, w) => {
          for (let e = 0; e < 256; e++)
            assert.equal(got[w * 256 + e], want[e], `${dtype} ${way}: D[${Math.floor(e / 16)}][${e % 16}]`);
        });
        // again with inexact floats as C: pack2 of them checks the rounding
        const p2 = newParams().view_(a).view_(b).view_(cp).view_(d).view_(packed);
        launch(cudaKernel('mma_check', `mma_check_${name}`), p2, { grid: 1, block: 32 });
        const words = packed.toTypedArray() as Int32Array;
        for (let i = 0; i < 128; i++) {
          const w = (round(cPack[2 * i]) | (round(cPack[2 * i + 1]) << 16)) | 0;
          assert.equal(words[i], w, `${dtype} pack2 of (${cPack[2 * i]}, ${cPack[2 * i + 1]})`);
        }
      });
    });
});
