// queueCallback (PyTorch's engine queue_callback) and isBackwardRunning: a callback queued during
// a backward runs once, after that pass's last node and before backward() returns; one queued in a
// nested pass (a checkpoint's recomputation runs its own backward) runs at the end of the nested
// pass; outside a backward it is an error; a failing pass runs none; a callback that throws does not
// keep the others from running, and its error is rethrown.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { checkpoint } from '../../src/autograd/checkpoint.js';
import { isBackwardRunning, queueCallback } from '../../src/autograd/engine.js';
import { record } from '../../src/ops/dispatch.js';
import { refLeaf } from '../helpers.js';

/** An identity on the tape whose backward runs `fn` first. */
const mark = (x: k.Tensor, fn: () => void): k.Tensor => record('mark', x.alias(), [x], (g) => (fn(), [g.alias()]));

test('queueCallback: runs after the pass\'s last node (the earliest leaf\'s hook), once; isBackwardRunning only inside', () => {
  const events: string[] = [];
  const a = refLeaf([3], 1);
  const b = refLeaf([3], 2);
  a.registerHook(() => void events.push('a grad'));
  const early = a.mul(2); // recorded before the mark: its node runs after the mark's
  const y = mark(b.mul(3), () => {
    events.push(`mark (running ${isBackwardRunning()})`);
    queueCallback(() => events.push(`callback (running ${isBackwardRunning()})`));
  }).add(early).sum();
  assert.equal(isBackwardRunning(), false);
  y.backward();
  assert.deepEqual(events, ['mark (running true)', 'a grad', 'callback (running false)']);
  assert.throws(() => queueCallback(() => {}), /queueCallback: no backward pass is running/);
});

test('queueCallback: queued inside a checkpoint\'s recomputation, it runs when that nested pass ends, before the outer pass goes on', () => {
  const events: string[] = [];
  const x = refLeaf([4], 3);
  const z = refLeaf([4], 4);
  z.registerHook(() => void events.push('z grad'));
  const early = z.mul(2);
  const y = checkpoint((t) => mark(t.tanh(), () => {
    if (!isBackwardRunning()) return;
    queueCallback(() => events.push('inner callback'));
  }), x).add(early).sum();
  y.backward();
  assert.deepEqual(events, ['inner callback', 'z grad']);
});

test('queueCallback: a backward that fails runs none of its callbacks', () => {
  let ran = false;
  const x = refLeaf([2], 5);
  const y = record('fails', x.alias(), [x], () => {
    queueCallback(() => (ran = true));
    throw new Error('backward failed here');
  }).sum();
  assert.throws(() => y.backward(), /backward failed here/);
  assert.equal(ran, false);
  assert.equal(isBackwardRunning(), false, 'the failed pass is no longer running');
});

test('queueCallback: a callback that throws does not stop the ones after it; backward() rethrows the first error', () => {
  const ran: string[] = [];
  const x = refLeaf([2], 6);
  const y = mark(x.mul(2), () => {
    queueCallback(() => void ran.push('first'));
    queueCallback(() => {
      throw new Error('callback failed');
    });
    queueCallback(() => void ran.push('third'));
  }).sum();
  assert.throws(() => y.backward(), /callback failed/);
  assert.deepEqual(ran, ['first', 'third']);
  assert.ok(x.grad, 'the pass itself completed');
});
