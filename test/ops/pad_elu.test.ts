// pad1d (constant and reflect, torch.nn.functional.pad over the last dim) and elu against values
// written out by hand from their definitions; gradients by central differences in float64
// (elu away from its kink at 0, reflect where edge positions are used twice so gradients add).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { pad1d } from '../../src/ops/pad.js';
import { elu } from '../../src/ops/activation.js';
import { assertClose, gradcheck, refLeaf } from '../helpers.js';

test('pad1d reflect mirrors without repeating the edge; constant pads zeros', () => {
  const x = k.tensor([[1, 2, 3, 4]], { dtype: 'float64', backend: 'ref' });
  // torch.nn.functional.pad([1,2,3,4], (3, 2), 'reflect') = [4,3,2,1,2,3,4,3,2]
  assertClose(pad1d(x, 3, 2, 'reflect'), [4, 3, 2, 1, 2, 3, 4, 3, 2], { atol: 0, rtol: 0, what: 'reflect' });
  assertClose(pad1d(x, 1, 2), [0, 1, 2, 3, 4, 0, 0], { atol: 0, rtol: 0, what: 'constant' });
  assert.throws(() => pad1d(x, 4, 0, 'reflect'), /reflect padding \(4, 0\) must be shorter than the input's last dim \(\[1, 4\]\)/);
  const one = k.tensor([[[5]]], { dtype: 'float64', backend: 'ref' });
  assertClose(pad1d(one, 0, 0, 'reflect'), [5], { atol: 0, rtol: 0, what: 'no padding' });
});

test('pad1d gradients (reflect and constant) match central differences in float64', () => {
  gradcheck((a) => pad1d(a, 3, 4, 'reflect'), [refLeaf([2, 2, 7], 1)], { what: 'pad1d reflect' });
  gradcheck((a) => pad1d(a, 2, 1), [refLeaf([2, 5], 2)], { what: 'pad1d constant' });
});

test('elu equals x for x > 0 and alpha (exp(x) - 1) otherwise, with its gradient', () => {
  const xs = [-30, -2, -0.5, 0.25, 3];
  const x = k.tensor(xs, { dtype: 'float64', backend: 'ref' });
  assertClose(elu(x), xs.map((v) => (v > 0 ? v : Math.expm1(v))), { atol: 1e-15, rtol: 1e-12, what: 'elu' });
  assertClose(elu(x, 0.5), xs.map((v) => (v > 0 ? v : 0.5 * Math.expm1(v))), { atol: 1e-15, rtol: 1e-12, what: 'elu alpha 0.5' });
  // refLeaf values lie in [-1, 1]; shift them off the kink at 0
  const a = k.tensor(Array.from({ length: 12 }, (_, i) => (i % 2 ? 1 : -1) * (0.1 + 0.13 * i)), { dtype: 'float64', backend: 'ref', requiresGrad: true });
  gradcheck((t) => elu(t, 1.3), [a], { what: 'elu' });
});
