// QuantLinear: forward and input gradient equal dequantize-then-linear (the same float32
// products), the input gradient passes gradcheck in float64 on the reference backend, the layer
// keeps only the quantized bytes (about 1/8 of float32 for 4-bit) and allocates no float copy
// of the weight in a call (on cuda: a forward of at most 8 rows, the fused GEMV; bigger batches
// decode a transient tile), and the FrozenLinear methods record nothing; on every native device.
import { ALL_DEVICES, skipUnless } from '../devices.js';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { assertClose, gradcheck, refLeaf } from '../helpers.js';

// float32 x throughout: int8 weights' decode GEMV would otherwise quantize x to int8
// (quant_gemv_int8.cc, checked against its own bound in quant_gemv_int8.test.ts)
process.env.KESTREL_QUANT_GEMV = 'float';

const FORMATS: k.quant.QuantOptions[] = [{ type: 'nf4' }, { type: 'fp4' }, { type: 'nf4', doubleQuant: true }, { type: 'int8' }];
const label = (o: k.quant.QuantOptions) => `${o.type}${o.doubleQuant ? '+dq' : ''}`;

for (const device of ALL_DEVICES)
  describe(`QuantLinear on ${device}`, { skip: skipUnless(device) }, () => {
    for (const opts of FORMATS)
      test(`${label(opts)}: forward and input gradient equal the dequantized composite`, () => {
        k.manualSeed(3);
        const lin = new k.nn.Linear(128, 33, { backend: device });
        const q = k.quant.QuantLinear.fromLinear(lin, opts);
        const x = k.randn([5, 128], { backend: device }).requiresGrad_();
        const y = k.tidy(() => q.forward(x));
        y.sum().backward();
        const gq = x.grad!.toFloat32Array();
        x.zeroGrad();
        const w = q.dequantize();
        const ref = k.tidy(() => k.linear(x, w, lin.bias));
        ref.sum().backward();
        assertClose(y, ref, { atol: 1e-5, rtol: 1e-5 });
        assertClose(gq, x.grad!, { atol: 1e-5, rtol: 1e-5 });
        assert.equal(lin.weight.grad, null);
        assert.equal(q.bias!.requiresGrad, false, 'the bias is frozen with the weight');
        assert.equal(q.bias!.grad, null);
      });

    test('resident weight memory is the quantized bytes only; a call allocates no float weight', () => {
      const [N, K] = [128, 512];
      const lin = new k.nn.Linear(K, N, { bias: false, backend: device });
      for (const opts of FORMATS) {
        const before = k.memory.stats(device).current.param;
        const q = k.quant.QuantLinear.fromLinear(lin, opts);
        const added = k.memory.stats(device).current.param - before;
        const blocks = (N * K) / 64;
        const want = opts.type === 'int8'
          ? N * K + N * 4 // int8 values + one float32 SCB per row
          : (N * K) / 2 + 16 * 4 + (opts.doubleQuant ? blocks + Math.ceil(blocks / 256) * 4 + 256 * 4 : blocks * 4); // nibbles, code table, absmax (8-bit + nested)
        assert.equal(added, want, label(opts));
        if (opts.type !== 'int8') assert.ok(added < (N * K * 4) / 7, `${label(opts)}: ${added} bytes vs ${N * K * 4} in float32`);
        const x = k.randn([2, K], { backend: device });
        const base = k.memory.stats(device).current.total;
        k.memory.resetPeak();
        const y = q.forward(x);
        assert.equal(k.memory.stats(device).peak.total - base, 2 * N * 4, `${label(opts)}: only the output is allocated`);
        y.dispose();
        x.dispose();
        q.dispose();
        assert.equal(k.memory.stats(device).current.param, before, `${label(opts)}: dispose frees the quantized buffers`);
      }
    });

    test('FrozenLinear: applyWeight / applyWeightTransposed record no autograd and take no bias', () => {
      k.manualSeed(6);
      const lin = new k.nn.Linear(48, 20, { backend: device });
      const q = k.quant.QuantLinear.fromLinear(lin, { type: 'nf4', blockSize: 32 });
      assert.deepEqual([q.inFeatures, q.outFeatures], [48, 20]);
      const x = k.randn([3, 48], { backend: device }).requiresGrad_();
      k.tidy(() => {
        const y = q.applyWeight(x);
        assert.equal(y.requiresGrad, false);
        const w = q.dequantize();
        assertClose(y, k.noGrad(() => k.matmul(x, w.t())), { atol: 1e-6, rtol: 1e-5 });
        const g = k.randn([3, 20], { backend: device });
        const dx = q.applyWeightTransposed(g);
        assert.equal(dx.requiresGrad, false);
        assertClose(dx, k.matmul(g, w), { atol: 1e-6, rtol: 1e-5 });
      });
      assert.deepEqual(Object.keys(q.stateDict()), ['bias'], 'quantized buffers are not state-dict entries');
    });
  });

for (const opts of FORMATS)
  test(`${label(opts)}: input gradient passes gradcheck in float64 (reference backend)`, () => {
    k.manualSeed(4);
    const lin = new k.nn.Linear(40, 7, { backend: 'ref' });
    const q = k.quant.QuantLinear.fromLinear(lin, { ...opts, blockSize: opts.type === 'int8' ? undefined : 32 });
    gradcheck((x) => q.forward(x), [refLeaf([3, 2, 40], 5)], { what: label(opts) });
  });

test('casting a quantized layer leaves its storage format alone; bf16 inputs give the float32 product rounded', () => {
  const q = k.quant.QuantLinear.fromLinear(new k.nn.Linear(32, 16, { bias: false }), { type: 'nf4', blockSize: 32, doubleQuant: true }); // a cast bias would round differently
  const x = k.randn([3, 32], { generator: new k.Generator(4) }).to('bfloat16');
  // a backend whose GEMM takes half operands (Backend.halfMatmul) decodes W to x's dtype first, as
  // bitsandbytes does on a GPU; elsewhere the float32 decode multiplies x's float32 copy
  const half = k.defaultBackend().halfMatmul;
  const want = k.noGrad(() => (half
    ? k.matmul(x.to('float32'), q.dequantize().to('bfloat16').to('float32').t())
    : q.forward(x.to('float32'))).to('bfloat16').toFloat32Array());
  q.to('bfloat16');
  for (const [name, b] of q.namedBuffers()) assert.notEqual(b.dtype, 'bfloat16', `${name} keeps its format dtype`);
  const got = k.noGrad(() => q.forward(x));
  assert.equal(got.dtype, 'bfloat16');
  // the half GEMM may sum in another order than sgemm: a float32 result near a rounding boundary
  // can land one bf16 ulp away (2^-8 relative)
  if (half) assertClose(got, want, { atol: 0, rtol: 2 ** -8 });
  else assert.deepEqual(got.toFloat32Array(), want);
  assert.throws(() => k.quant.QuantLinear.fromLinear(new k.nn.Linear(32, 16), { type: 'int8', doubleQuant: true }), /doubleQuant applies to nf4\/fp4/);
  assert.throws(() => k.quant.QuantLinear.fromLinear(new k.nn.Linear(32, 16), { type: 'q4_0' as 'nf4' }), /unsupported type "q4_0"/);
});

test('under autocast the product returns the autocast dtype, as linear does, and x still gets a float32 gradient', () => {
  k.manualSeed(7);
  const lin = new k.nn.Linear(64, 24, { bias: false });
  const q = k.quant.QuantLinear.fromLinear(lin, { type: 'nf4', blockSize: 32 });
  const x = k.randn([4, 64]).requiresGrad_();
  const y = k.autocast('bfloat16', () => k.tidy(() => q.forward(x)));
  assert.equal(y.dtype, 'bfloat16');
  const w = q.dequantize();
  // linear rounds W to bfloat16 as well, the quantized path keeps its float32 decode: bf16 tolerance
  const ref = k.autocast('bfloat16', () => k.tidy(() => k.linear(x, w)));
  assert.equal(ref.dtype, 'bfloat16');
  assertClose(y, ref, { atol: 2e-2, rtol: 2e-2 });
  k.tidy(() => y.to('float32').sum().backward());
  assert.equal(x.grad!.dtype, 'float32');
});
