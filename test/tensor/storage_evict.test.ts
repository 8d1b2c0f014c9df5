// Storage.evict()/restore() (what ZeRO-3 does to a gathered layer between its forward and its
// backward): the bytes leave k.memory's count at evict and come back at restore, every view of the
// storage stays a valid handle, an op on one while evicted is a clear error, and a storage disposed
// while evicted is not freed twice. On the native CPU backend and the reference backend.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { backendOf } from '../../src/backend/index.js';

for (const backend of ['cpu', 'ref'] as const) {
  test(`Storage.evict/restore on ${backend}: memory counted out and back, views kept, ops refused while evicted`, () => {
    const before = k.memory.stats().current;
    const full = k.memory.withTag('param', () => k.arange(0, 33, 1, { backend, dtype: 'float32' }));
    const view = k.noGrad(() => k.narrow(full, 0, 7, 5));
    view.name = 'layers.0.w';
    const bytes = 33 * 4;
    assert.equal(k.memory.stats().current.param - before.param, bytes);

    full.storage.evict();
    assert.ok(full.storage.evicted && !full.storage.released, 'evicted, not released: the views still hold it');
    assert.equal(k.memory.stats().current.param - before.param, 0, 'the bytes are no longer counted');
    full.storage.evict(); // a second evict is nothing
    assert.equal(k.memory.stats().current.param - before.param, 0);
    assert.throws(() => k.add(view, 1), /add: tensor 'layers.0.w' of shape \[5\] has no bytes now: its storage was evicted/);
    assert.throws(() => backendOf(view).kernels.fill(view, 1), /storage is evicted \(restore\(\) it first\)/, 'a kernel called directly refuses it too');
    full.storage.tag = 'activation'; // a retag while evicted moves no bytes between tags
    assert.equal(k.memory.stats().current.activation - before.activation, 0);
    full.storage.tag = 'param';

    full.storage.restore();
    assert.equal(k.memory.stats().current.param - before.param, bytes, 'counted again');
    k.noGrad(() => backendOf(full).kernels.copy(k.arange(100, 133, 1, { backend, dtype: 'float32' }), full));
    assert.deepEqual(Array.from(k.toFloat32Array(view)), [107, 108, 109, 110, 111], 'the old view reads the restored block');

    full.storage.evict();
    full.dispose();
    view.dispose();
    assert.ok(full.storage.released);
    assert.equal(k.memory.stats().current.param - before.param, 0, 'disposed while evicted: counted out once');
    assert.throws(() => full.storage.restore(), /restore\(\) of a released storage/);
  });
}

test('Storage.evict: a meta tensor has no bytes of its own to evict', () => {
  const meta = k.metaTensor([4, 4], 'float32');
  assert.throws(() => meta.storage.evict(), /only bytes this process owns can be evicted \(this one is a meta tensor's\)/);
});
