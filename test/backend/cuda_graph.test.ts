// CUDA graphs (src/backend/cuda/graph.ts) on the GPU or the emulator: replays recompute from the
// inputs' current values into the same outputs; memory the capture used is never handed to later
// allocations (a replay after other work still gives the right answer); host copies and
// synchronization inside a capture are clear errors that leave no capture behind.
import { skipUnless } from '../devices.js';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';

const skip = skipUnless('cuda');

/** Writes host values into an existing cuda tensor (what a graph's input buffer needs). */
function write(dst: k.Tensor, values: number[]): void {
  k.tidy(() => k.getBackend('cuda').kernels.copy(k.tensor(values, { backend: 'cuda' }), dst));
}

test('a captured graph replays against new input values', { skip }, () => {
  const x = k.zeros([5], { backend: 'cuda' });
  const { graph, result: y } = k.cuda.captureGraph(() => k.tidy(() => x.mul(3).add(1).exp().log().sum()));
  for (const v of [[1, 2, 3, 4, 5], [0, 0, 0, 0, 1], [-1, 2, -3, 4, -5]]) {
    write(x, v);
    graph.replay();
    // other work between replays must not take the graph's intermediates
    const other = k.tidy(() => k.full([5], 7, { backend: 'cuda' }).mul(2));
    assert.ok(Math.abs(y.item() - v.reduce((s, a) => s + 3 * a + 1, 0)) < 1e-4, `sum for ${v}`);
    assert.deepEqual(other.toArray(), [14, 14, 14, 14, 14]);
    other.dispose();
  }
  graph.dispose();
  assert.throws(() => graph.replay(), /replay after dispose/);
  y.dispose();
  x.dispose();
});

test('host copies and synchronization inside a capture are errors, and the capture is abandoned', { skip }, () => {
  assert.throws(() => k.cuda.captureGraph(() => k.tensor([1, 2, 3], { backend: 'cuda' })), /host copies cannot be captured/);
  const x = k.ones([3], { backend: 'cuda' });
  assert.throws(() => k.cuda.captureGraph(() => x.add(1).toArray()), /host copies cannot be captured/);
  assert.throws(() => k.cuda.captureGraph(() => k.cuda.synchronize()), /cannot synchronize while a CUDA graph is being captured/);
  // no capture is left open: ordinary work runs and reads back
  assert.deepEqual(x.add(1).toArray(), [2, 2, 2]);
  x.dispose();
});
