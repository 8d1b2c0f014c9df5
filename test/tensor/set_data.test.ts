// Tensor.setData (PyTorch's `p.data = src`, what ZeRO 1-2 does on one machine to point each
// parameter into its bucket's shared region): the tensor keeps its identity, name, requiresGrad and
// hooks, reads and writes src's elements from then on, and its old storage is freed once nothing
// else holds it; a src of another shape, dtype or backend is refused, naming both.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { backendOf } from '../../src/backend/index.js';

for (const backend of ['cpu', 'ref'] as const) {
  test(`Tensor.setData on ${backend}: the parameter views the flat buffer, keeps its autograd identity, frees its old block`, () => {
    const before = k.memory.stats().current.param;
    const p = k.memory.withTag('param', () => k.tensor([1, 2, 3, 4, 5, 6], { backend, shape: [2, 3] })).requiresGrad_();
    p.name = 'layers.0.w';
    let hooked = 0;
    p.registerHook(() => hooked++);
    const flat = k.memory.withTag('param', () => k.arange(0, 33, 1, { backend, dtype: 'float32' }));
    assert.equal(k.memory.stats().current.param - before, (6 + 33) * 4);

    k.tidy(() => p.setData(k.noGrad(() => k.reshape(k.narrow(flat, 0, 7, 6), [2, 3])))); // the views die with the scope: p holds its own reference
    assert.equal(k.memory.stats().current.param - before, 33 * 4, 'the old 6 elements were freed: only the flat buffer is counted');
    assert.deepEqual(Array.from(k.toFloat32Array(p)), [7, 8, 9, 10, 11, 12], 'p reads the flat buffer');
    k.noGrad(() => backendOf(p).kernels.fill(p, -1));
    assert.deepEqual(Array.from(k.toFloat32Array(flat)).slice(6, 14), [6, -1, -1, -1, -1, -1, -1, 13], 'a write through p lands in the flat buffer');

    // still the same leaf: the gradient of sum(p * p) is 2p, delivered to p.grad and its hook
    k.sum(k.mul(p, p)).backward();
    assert.deepEqual(Array.from(k.toFloat32Array(p.grad!)), [-2, -2, -2, -2, -2, -2]);
    p.grad!.dispose();
    p.grad = null;
    assert.equal(hooked, 1);
    assert.equal(p.name, 'layers.0.w');

    assert.throws(() => p.setData(k.zeros([3, 2], { backend })), /setData: float32 \[3, 2\] on '(cpu|ref)' cannot replace 'layers.0.w' float32 \[2, 3\]/);
    assert.throws(() => p.setData(k.zeros([2, 3], { backend, dtype: 'float64' })), /setData: float64 \[2, 3\]/);
    flat.dispose();
    assert.equal(k.memory.stats().current.param - before, 33 * 4, 'p still holds the flat buffer');
    p.dispose();
    assert.equal(k.memory.stats().current.param - before, 0, 'the last handle frees it');
  });
}
