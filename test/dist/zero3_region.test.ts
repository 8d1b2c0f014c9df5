// The ZeRO-3 unit region (src/dist/zero3_region.ts) in one process on the float64 reference
// backend, with hooks that do what ZeRO does to a layer's weight: gather puts a copy of the master
// in place (into the evicted storage again, for backward), release evicts its bytes while a
// recorded use waits for its backward (else frees it). Checked: the weight holds no bytes between
// forward and backward; backward gathers it again before any node of the unit runs and reduces only
// after the last one; the input and weight gradients equal plain autograd through the same function
// (and central differences for the input); a unit whose inputs need no gradient, or one of whose
// inputs never gets a gradient, is finished at the end of the backward pass; a unit recorded inside a backward (a checkpoint's recomputation) and the
// head keep their bytes until their backward.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { backendOf } from '../../src/backend/index.js';
import { checkpoint } from '../../src/autograd/checkpoint.js';
import { runGathered } from '../../src/dist/zero3_region.js';
import { linear } from '../../src/ops/matmul.js';
import { assertClose, gradcheck, refLeaf } from '../helpers.js';

/** A float64 tensor's values, flat (toArray keeps float64 precision). */
function values(t: k.Tensor): Float64Array {
  const out: number[] = [];
  const walk = (v: unknown): void => void (Array.isArray(v) ? v.forEach(walk) : out.push(v as number));
  walk(t.toArray());
  return Float64Array.from(out);
}

/** A "layer" whose weight lives as a master copy and is put in place only while gathered, ZeRO-3's way. */
function gatheredLayer(master: k.Tensor, o: { trainable?: boolean } = {}) {
  const layer = { w: null as k.Tensor | null };
  const calls: string[] = [];
  let held: k.Tensor | null = null; // the gathered weight (the tape's leaf), evicted between forward and backward
  let uses = 0;
  let grad: Float64Array | null = null;
  const fill = () => k.noGrad(() => backendOf(held!).kernels.copy(master, held!));
  const hooks = {
    gather: (phase: 'forward' | 'backward') => {
      calls.push(`gather ${phase}`);
      if (!held) held = k.noGrad(() => master.clone()).requiresGrad_(o.trainable ?? true);
      else if (held.storage.evicted) (held.storage.restore(), fill());
      layer.w = held;
    },
    recorded: () => void uses++,
    reduce: () => {
      calls.push('reduce');
      uses--;
      if (held!.grad) grad = values(held!.grad);
    },
    release: (untilBackward?: boolean) => {
      calls.push(untilBackward ? 'release until backward' : 'release');
      layer.w = null;
      if (untilBackward) return;
      if (uses > 0) return held!.storage.evict(); // the tape's saved view keeps the storage, without bytes
      held!.dispose();
      held = null;
    },
  };
  const forward = (x: k.Tensor, ctx: { scale: k.Tensor }) => ({ hidden: k.tanh(linear(x, layer.w!)).mul(ctx.scale).add(k.randn(x.shape.slice(0, 1).concat([master.shape[0]]), { backend: 'ref', dtype: 'float64' }).mul(0.01)), routerLogits: null });
  return { layer, calls, hooks, forward, grad: () => grad, weight: () => held };
}

/** The same function with the weight as an ordinary leaf: loss, d input, d weight. */
function plain(x: k.Tensor, scale: k.Tensor, seed: number) {
  const w = refLeaf([5, 3], 2);
  k.manualSeed(seed);
  const y = k.tanh(linear(x, w)).mul(scale).add(k.randn([4, 5], { backend: 'ref', dtype: 'float64' }).mul(0.01)).mul(refLeaf([4, 5], 5)).sum();
  y.backward();
  return { loss: y.item(), dx: x.grad ? values(x.grad) : null, dw: values(w.grad!) };
}

const run = (g: ReturnType<typeof gatheredLayer>, x: k.Tensor, scale: k.Tensor, o: { backwardNext?: boolean } = {}) =>
  (runGathered('layers.0', g.forward as (...a: unknown[]) => unknown, [x, { scale }], g.hooks, o) as { hidden: k.Tensor; routerLogits: null }).hidden;

test('ZeRO-3 region: evicted after forward, gathered again before its backward, reduced after it; gradients equal plain autograd (central differences for the input)', () => {
  const master = refLeaf([5, 3], 2);
  const x = refLeaf([4, 3], 3);
  const scale = refLeaf([1], 4, 0.5, 1.5);
  const g = gatheredLayer(master);
  k.manualSeed(7);
  const hidden = run(g, x, scale);
  assert.deepEqual(g.calls, ['gather forward', 'release'], 'forward gathers, runs on the tape, releases');
  assert.equal(g.layer.w, null);
  assert.ok(g.weight()!.storage.evicted, 'nothing of the weight\'s bytes is held between forward and backward');
  const y = hidden.mul(refLeaf([4, 5], 5)).sum();
  y.backward();
  assert.deepEqual(g.calls, ['gather forward', 'release', 'gather backward', 'reduce', 'release']);
  assert.equal(g.weight(), null, 'freed after its backward');

  const x2 = refLeaf([4, 3], 3);
  const ref = plain(x2, scale, 7);
  assertClose([y.item()], [ref.loss], { atol: 0, rtol: 0, what: 'loss' });
  assertClose(values(x.grad!), ref.dx!, { atol: 1e-14, rtol: 0, what: 'd input' });
  assertClose(g.grad()!, ref.dw, { atol: 1e-14, rtol: 0, what: 'd weight, handed to reduce()' });

  const check = gatheredLayer(master);
  gradcheck((xi) => {
    k.manualSeed(7);
    return run(check, xi, scale);
  }, [refLeaf([4, 3], 3)], { what: 'zero3 region d input' });
});

test('ZeRO-3 region, backwardNext (the forward\'s last unit): keeps its bytes until its backward, then reduced and released', () => {
  const master = refLeaf([5, 3], 2);
  const x = refLeaf([4, 3], 3);
  const scale = refLeaf([1], 4, 0.5, 1.5);
  const g = gatheredLayer(master);
  k.manualSeed(9);
  const hidden = run(g, x, scale, { backwardNext: true });
  assert.deepEqual(g.calls, ['gather forward', 'release until backward']);
  assert.ok(!g.weight()!.storage.evicted, 'kept');
  hidden.mul(refLeaf([4, 5], 5)).sum().backward();
  assert.deepEqual(g.calls, ['gather forward', 'release until backward', 'gather backward', 'reduce', 'release']);
  const ref = plain(refLeaf([4, 3], 3), scale, 9);
  assertClose(values(x.grad!), ref.dx!, { atol: 1e-14, rtol: 0, what: 'd input' });
  assertClose(g.grad()!, ref.dw, { atol: 1e-14, rtol: 0, what: 'd weight' });
});

test('ZeRO-3 region: a unit whose inputs need no gradient (LoRA\'s first layer) is reduced at the end of the backward pass, after nodes recorded before it', () => {
  const master = refLeaf([5, 3], 2);
  const x = k.noGrad(() => refLeaf([4, 3], 3).detach());
  const scale = k.noGrad(() => refLeaf([1], 4, 0.5, 1.5).detach());
  const z = refLeaf([4, 5], 6);
  const g = gatheredLayer(master);
  z.registerHook(() => void g.calls.push('z grad'));
  const early = z.mul(2); // recorded before the unit: its backward runs after the unit's nodes
  k.manualSeed(11);
  const y = run(g, x, scale).mul(early).sum();
  y.backward();
  assert.deepEqual(g.calls, ['gather forward', 'release', 'gather backward', 'z grad', 'reduce', 'release']);
  const w = refLeaf([5, 3], 2);
  k.manualSeed(11);
  k.tanh(linear(x, w)).mul(scale).add(k.randn([4, 5], { backend: 'ref', dtype: 'float64' }).mul(0.01)).mul(z.detach().mul(2)).sum().backward();
  assertClose(g.grad()!, values(w.grad!), { atol: 1e-14, rtol: 0, what: 'd weight' });
});

test('ZeRO-3 region: an input that needs a gradient but does not reach the output still lets the unit finish, at the end of the pass', () => {
  const g = gatheredLayer(refLeaf([5, 3], 2));
  const x = refLeaf([4, 3], 3);
  const unused = refLeaf([1], 4); // passed in the context, never read: its input mark never runs
  const forward = (xi: k.Tensor) => ({ hidden: k.tanh(linear(xi, g.layer.w!)), routerLogits: null });
  const out = runGathered('layers.0', forward as (...a: unknown[]) => unknown, [x, { unused }], g.hooks) as { hidden: k.Tensor };
  out.hidden.sum().backward();
  assert.deepEqual(g.calls, ['gather forward', 'release', 'gather backward', 'reduce', 'release']);
  assert.ok(g.grad(), 'the weight gradient reached reduce()');
});

test('ZeRO-3 region inside a checkpoint: the first forward frees, the recomputation (inside backward) keeps its bytes for the backward that follows', () => {
  const master = refLeaf([5, 3], 2);
  const x = refLeaf([4, 3], 3);
  const scale = refLeaf([1], 4, 0.5, 1.5);
  const g = gatheredLayer(master);
  k.manualSeed(13);
  const hidden = checkpoint((xi, s) => run(g, xi, s), x, scale);
  assert.deepEqual(g.calls, ['gather forward', 'release'], 'the checkpoint\'s forward runs without grad: gather, run, free');
  assert.equal(g.weight(), null);
  hidden.mul(refLeaf([4, 5], 5)).sum().backward();
  assert.deepEqual(g.calls, ['gather forward', 'release', 'gather forward', 'release until backward', 'gather backward', 'reduce', 'release']);
  const ref = plain(refLeaf([4, 3], 3), scale, 13);
  assertClose(values(x.grad!), ref.dx!, { atol: 1e-14, rtol: 0, what: 'd input' });
  assertClose(g.grad()!, ref.dw, { atol: 1e-14, rtol: 0, what: 'd weight' });
});

test('ZeRO-3 region: nothing needing a gradient (a frozen layer on a frozen input) is gather, run, free, with nothing recorded', () => {
  const g = gatheredLayer(refLeaf([5, 3], 2), { trainable: false });
  const x = k.noGrad(() => refLeaf([4, 3], 3).detach());
  const hidden = run(g, x, k.noGrad(() => refLeaf([1], 4).detach()));
  assert.equal(hidden.requiresGrad, false);
  assert.deepEqual(g.calls, ['gather forward', 'release']);
  assert.equal(g.weight(), null, 'freed at once');
});

test('ZeRO-3 region: a unit returning two tensors (MoE router logits) is refused by name', () => {
  const g = gatheredLayer(refLeaf([5, 3], 2));
  const two = (x: k.Tensor) => ({ hidden: linear(x, g.layer.w!), routerLogits: x.mul(2) });
  assert.throws(() => runGathered('model.layers.3', two as (...a: unknown[]) => unknown, [refLeaf([4, 3], 3)], g.hooks),
    /ZeRO stage 3: unit model.layers.3 returned 2 values \(hidden, routerLogits\); .*MoE layers' router logits are not supported/);
  assert.equal(g.layer.w, null, 'released even when the unit fails');
});
