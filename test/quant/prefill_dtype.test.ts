// A quantized inference weight's prefill in bf16 (QuantLinear.prefillDtype, native/quant.cc): float32
// inputs of 32 rows or more (an AMX tile) that need no gradient are rounded to bf16 and multiplied by the
// weight decoded to bf16, with float32 sums and a float32 result (no rounding of y). The reference is
// the float64 product of the bf16-rounded x and the bf16-rounded dequantized W: the kernel's only
// error is float32 accumulation (1e-5 of the largest output), while the float32 product of the
// unrounded operands differs by ~1e-3, so the tolerance tells the paths apart. Decode steps (<= 8
// rows, and batches below 32 rows) and anything that needs a gradient keep float32. Formats: int8, q4, nf4 (decoded straight to
// bf16 on AVX-512, through float elsewhere: the KESTREL_SIMD=avx2 child) and bf16 (used in place).
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { isNativeBf16Path, loadNative } from '../../src/backend/addon.js';
import { usePrefillDtype } from '../../src/quant/quantize_model.js';
import { skipUnless } from '../devices.js';
import { assertClose, runChild, seededTensor } from '../helpers.js';

process.env.KESTREL_QUANT_GEMV = 'float'; // the decode GEMV's rows in float32 (int8 activations are quant_gemv_int8.test.ts's)
const CHILD = process.env.KESTREL_PREFILL_CHILD === '1';
const TYPES = ['int8', 'q4', 'nf4', 'bf16'] as const;
// [M, N, K]: 32 rows (the first that take bf16), odd sizes, K not a multiple of q4's group of 32
// (groups straddle rows), several tiles of N (257 rows) and K above the AMX block (600)
const SHAPES: [number, number, number][] = [[32, 33, 77], [33, 7, 65], [37, 257, 600], [257, 1, 33]];
const F32_SUMS = { atol: 1e-5, rtol: 1e-4 };

/** The float64 reference of dtype-rounded operands: round(x) round(W)ᵀ. */
const product = (x: k.Tensor, w: k.Tensor, dtype: k.DType): k.Tensor =>
  k.matmul(x.to(dtype).to('ref').to('float64'), w.to(dtype).to('ref').to('float64').t());

describe('quantized prefill in bf16', { skip: skipUnless('cpu') }, () => {
  test('a float32 prefill multiplies bf16-rounded operands with float32 sums and a float32 result, every format and odd shape', () => {
    for (const type of TYPES)
      for (const [M, N, K] of SHAPES) {
        const q = k.quant.QuantLinear.fromWeight(seededTensor([N, K], 'float32', 'cpu', N + K, -0.5, 0.5), null, { type });
        q.prefillDtype = 'bfloat16';
        k.tidy(() => {
          const w = q.dequantize();
          const x = seededTensor([M, K], 'float32', 'cpu', M);
          const y = k.noGrad(() => q.forward(x));
          assert.equal(y.dtype, 'float32');
          assertClose(y, product(x, w, 'bfloat16'), { ...F32_SUMS, what: `${type} [${M}, ${N}, ${K}] prefill` });
          // rows taken with a stride (a slice of a wider activation) go in directly
          const wide = seededTensor([M, K + 5], 'float32', 'cpu', M + 1).narrow(1, 2, K);
          assertClose(k.noGrad(() => q.forward(wide)), product(wide, w, 'bfloat16'), { ...F32_SUMS, what: `${type} [${M}, ${N}, ${K}] strided rows` });
        });
        q.dispose();
      }
  });

  test('bf16 input gradients read the same decoded tiles: column ranges of a bf16 weight in place, of the others decoded', () => {
    // K = 600 splits dx's columns across threads (each reads W[:, k0:k1], a strided window of a bf16 weight)
    for (const type of TYPES)
      for (const [M, N, K] of [[9, 33, 600], [1, 7, 77]] as const) {
        const q = k.quant.QuantLinear.fromWeight(seededTensor([N, K], 'float32', 'cpu', N * K, -0.5, 0.5), null, { type });
        k.tidy(() => {
          const g = seededTensor([M, N], 'float32', 'cpu', M + 2).to('bfloat16');
          const dx = q.applyWeightTransposed(g);
          const want = k.matmul(g.to('ref').to('float64'), q.dequantize().to('bfloat16').to('ref').to('float64'));
          assertClose(dx, want, { atol: 1e-3, rtol: 8e-3, what: `${type} [${M}, ${N}, ${K}] dx (rounded once to bf16)` });
        });
        q.dispose();
      }
  });

  test('decode steps (<= 8 rows), batches below 32 rows and inputs that need a gradient keep float32; a layer without prefillDtype is unchanged', () => {
    const q = k.quant.QuantLinear.fromWeight(seededTensor([40, 96], 'float32', 'cpu', 3, -0.5, 0.5), null, { type: 'int8' });
    k.tidy(() => {
      const w = q.dequantize();
      const exact = (x: k.Tensor) => product(x, w, 'float32');
      const decode = seededTensor([8, 96], 'float32', 'cpu', 4);
      const batch = seededTensor([31, 96], 'float32', 'cpu', 6);
      const prompt = seededTensor([32, 96], 'float32', 'cpu', 5);
      assertClose(k.noGrad(() => q.forward(prompt)), exact(prompt), { ...F32_SUMS, what: 'no prefillDtype' });
      q.prefillDtype = 'bfloat16';
      assertClose(k.noGrad(() => q.forward(decode)), exact(decode), { ...F32_SUMS, what: 'decode rows' });
      assertClose(k.noGrad(() => q.forward(batch)), exact(batch), { ...F32_SUMS, what: '31 rows' });
      const trained = prompt.clone().requiresGrad_();
      const y = q.forward(trained);
      assertClose(y, exact(prompt), { ...F32_SUMS, what: 'rows that need a gradient' });
      y.sum().backward();
      assertClose(trained.grad!, k.matmul(k.ones([32, 40]), w), { ...F32_SUMS, what: 'their gradient' });
      assertClose(k.noGrad(() => q.forward(prompt)), product(prompt, w, 'bfloat16'), { ...F32_SUMS, what: 'prefill' });
    });
    q.dispose();
  });

  test('inference quantization marks its layers bf16 where the CPU multiplies bf16 natively, else int8 (int8/q4); KESTREL_PREFILL_DTYPE=float32 opts out', () => {
    const native = isNativeBf16Path(loadNative()?.info().bf16Gemm);
    class Two extends k.nn.Module {
      up = new k.nn.Linear(64, 32);
      down = new k.nn.Linear(32, 16);
    }
    const model = new Two();
    k.quant.quantizeModel(model, { type: 'q4' });
    const layers = model.namedModules().map(([, m]) => m).filter((m): m is k.quant.QuantLinear => m instanceof k.quant.QuantLinear);
    assert.equal(layers.length, 2);
    assert.deepEqual(layers.map((l) => l.prefillDtype), [null, null], 'quantizeModel alone (QLoRA) leaves float32');
    process.env.KESTREL_PREFILL_DTYPE = 'float32';
    try {
      assert.equal(usePrefillDtype(model), 0);
    } finally {
      delete process.env.KESTREL_PREFILL_DTYPE;
    }
    assert.equal(usePrefillDtype(model), 2);
    assert.deepEqual(layers.map((l) => l.prefillDtype), native ? ['bfloat16', 'bfloat16'] : ['int8', 'int8']);
    model.dispose();
  });

  if (!CHILD)
    test('the AVX2 body (weights decoded through float32, then rounded) agrees (child process)', () => {
      runChild(fileURLToPath(import.meta.url), { KESTREL_SIMD: 'avx2', KESTREL_PREFILL_CHILD: '1' }, 120_000);
    });
});
