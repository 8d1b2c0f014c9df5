// QuantLinear: the dequantize-inside-the-matmul forward and backward equal dequantize-then-linear,
// the layer keeps only the packed weight (about 1/8 of float32 plus scales) between calls.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { assertClose } from '../helpers.js';

for (const type of ['nf4', 'fp4'] as const)
  test(`${type}: forward and input gradient equal the dequantized composite`, () => {
    k.manualSeed(3);
    const lin = new k.nn.Linear(128, 33);
    const q = k.quant.QuantLinear.fromLinear(lin, { type });
    const x = k.randn([5, 128]).requiresGrad_();
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
  });

test('resident weight memory is the packed codes and scales only', () => {
  const lin = new k.nn.Linear(256, 64, { bias: false });
  const before = k.memory.stats().current.param;
  const q = k.quant.QuantLinear.fromLinear(lin);
  const added = k.memory.stats().current.param - before;
  assert.equal(added, (256 * 64) / 2 + ((256 * 64) / 64) * 4, 'packed bytes + one float32 absmax per 64 values');
  const x = k.randn([2, 256]);
  const base = k.memory.stats().current.total;
  k.tidy(() => q.forward(x)).dispose();
  assert.equal(k.memory.stats().current.total, base, 'the dequantized temporary is freed');
});
