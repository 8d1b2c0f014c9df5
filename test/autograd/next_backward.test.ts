// onNextBackward (what torch's DDP learns from its graph walk for find_unused_parameters): the
// listener runs once, as the next outermost backward starts, before any gradient exists, with the
// leaves that pass will reach; null where a checkpointed region hides the leaves it reaches; a
// recomputation's inner pass does not count as the next backward; a cancelled listener never runs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { onNextBackward } from '../../src/autograd/engine.js';

const leaf = (n: number, seed: number): k.Tensor => k.tensor(Float32Array.from({ length: n * n }, (_, i) => Math.sin(i + seed)), { shape: [n, n], backend: 'cpu' }).requiresGrad_(true);

test('the leaves the next backward reaches, once, before any gradient; not the unused one', () => {
  const [a, b, unused] = [leaf(2, 1), leaf(2, 2), leaf(2, 3)];
  const seen: (Set<k.Tensor> | null)[] = [];
  onNextBackward((reached) => void seen.push(reached && new Set(reached)));
  onNextBackward(() => assert.equal(a.grad, null, 'the listener runs before any gradient is made'));
  k.matmul(a, b).sum().backward();
  k.matmul(a, b).sum().backward(); // the listener was for one pass
  assert.equal(seen.length, 1);
  assert.deepEqual([seen[0]!.has(a), seen[0]!.has(b), seen[0]!.has(unused)], [true, true, false]);
});

test('null when a checkpointed region hides its leaves; its recomputation\'s pass is not the next backward', () => {
  const [a, b] = [leaf(2, 4), leaf(2, 5)];
  const seen: (ReadonlySet<k.Tensor> | null)[] = [];
  const x = k.tensor(Float32Array.from([1, 2, 3, 4]), { shape: [2, 2], backend: 'cpu' });
  const h = k.checkpoint((t) => k.matmul(t, a), x);
  onNextBackward((reached) => void seen.push(reached));
  k.matmul(h, b).sum().backward();
  assert.deepEqual(seen, [null], 'one call, with null (a is reached only inside the region)');
  assert.ok(a.grad && b.grad);
});

test('a cancelled listener does not run', () => {
  const a = leaf(2, 6);
  let ran = false;
  const cancel = onNextBackward(() => void (ran = true));
  cancel();
  k.mul(a, a).sum().backward();
  assert.equal(ran, false);
});

test('a listener that throws stops that backward before any gradient; the other listeners still run', () => {
  const a = leaf(2, 7);
  let ran = false;
  onNextBackward(() => {
    throw new Error('listener failed');
  });
  onNextBackward(() => void (ran = true));
  assert.throws(() => k.mul(a, a).sum().backward(), /listener failed/);
  assert.equal(ran, true);
  assert.equal(a.grad, null);
});
