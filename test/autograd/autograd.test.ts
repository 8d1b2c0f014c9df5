// Autograd semantics: accumulation, reuse, hooks, noGrad, detach, non-scalar roots, errors.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { assertClose } from '../helpers.js';

k.setDefaultBackend('ref');
const leaf = (v: number[] | number[][]): k.Tensor => k.tensor(v, { dtype: 'float64', requiresGrad: true });

describe('autograd', () => {
  test('a node used twice accumulates (micrograd): d(x*x + x)/dx = 2x + 1', () => {
    const x = leaf([1, -2, 3]);
    k.tidy(() => x.mul(x).add(x).sum().backward());
    assert.deepEqual(x.grad!.toArray(), [3, -3, 7]);
  });

  test('.grad accumulates across backward calls until zeroGrad', () => {
    const x = leaf([1, 2]);
    k.tidy(() => x.mul(3).sum().backward());
    k.tidy(() => x.mul(3).sum().backward());
    assert.deepEqual(x.grad!.toArray(), [6, 6]);
    x.zeroGrad();
    assert.equal(x.grad, null);
  });

  test('backward with an explicit gradient for a non-scalar output', () => {
    const x = leaf([1, 2, 3]);
    const y = x.mul(x);
    y.backward(k.tensor([1, 0.5, 2], { dtype: 'float64' }));
    assert.deepEqual(x.grad!.toArray(), [2, 2, 12]);
  });

  test('a non-scalar backward without a gradient names the shape', () => {
    const x = leaf([1, 2, 3]);
    assert.throws(() => x.mul(2).backward(), /non-scalar output of shape \[3\]/);
  });

  test('backward twice through freed buffers is an error; retainGraph allows it', () => {
    const x = leaf([1, 2]);
    const y = x.mul(x).sum();
    y.backward();
    assert.throws(() => y.backward(), /already freed|freed by an earlier backward/);
    const z = x.exp().sum();
    z.backward(undefined, { retainGraph: true });
    z.backward();
    // x.grad = 2x (first graph) + 2 exp(x) (second graph, run twice)
    assertClose(x.grad!, [2 + 2 * Math.E, 4 + 2 * Math.E ** 2], { what: "grad" });
  });

  test('unused inputs get no gradient; tensors without requiresGrad get none', () => {
    const a = leaf([1, 2]);
    const b = leaf([3, 4]);
    const c = k.tensor([5, 6], { dtype: 'float64' });
    k.tidy(() => a.mul(c).sum().backward());
    assert.ok(a.grad);
    assert.equal(b.grad, null);
    assert.equal(c.grad, null);
  });

  test('noGrad records nothing; detach cuts the tape', () => {
    const x = leaf([1, 2]);
    const y = k.noGrad(() => x.mul(2));
    assert.equal(y.requiresGrad, false);
    assert.equal(y.gradFn, null);
    const d = x.mul(2).detach();
    assert.equal(d.requiresGrad, false);
    assert.throws(() => d.sum().backward(), /does not require grad/);
  });

  test('hooks fire once per backward with the final accumulated gradient', () => {
    const x = leaf([1, 2]);
    const seen: number[][] = [];
    x.registerHook((g) => seen.push(g.toArray() as number[]));
    // x reaches the loss along three paths; the hook must see the sum, once
    k.tidy(() => x.mul(2).add(x.mul(x)).add(x).sum().backward());
    assert.deepEqual(seen, [[5, 7]]);
  });

  test('gradient shape equals input shape through broadcasting', () => {
    const a = leaf([[1, 2, 3]]);
    const b = leaf([[1], [2]]);
    k.tidy(() => a.add(b).sum().backward());
    assert.deepEqual([...a.grad!.shape], [1, 3]);
    assert.deepEqual([...b.grad!.shape], [2, 1]);
    assert.deepEqual(a.grad!.toArray(), [[2, 2, 2]]);
    assert.deepEqual(b.grad!.toArray(), [[3], [3]]);
  });

  test('integer and comparison results carry no gradient', () => {
    const x = leaf([1, -2]);
    assert.equal(x.gt(0).requiresGrad, false);
    assert.equal(x.argmax().requiresGrad, false);
  });
});
