// The ZeRO-3 unit region (src/dist/zero3_region.ts) in one process on the float64 reference
// backend: its forward keeps no gathered weight (the parameter is released, a poisoned stand-in
// in its place, before backward starts), its backward gathers again, recomputes and yields the
// same input gradient (checked by central differences) and the same parameter gradient as plain
// autograd through the same function; the RNG is replayed so a random draw inside repeats.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
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

/** A "layer" whose weight lives as a master copy and is put in place only while gathered. */
function gatheredLayer(master: k.Tensor) {
  const layer = { w: null as k.Tensor | null };
  const calls: string[] = [];
  let grad: Float64Array | null = null;
  const hooks = {
    gather: (phase: 'forward' | 'backward' | 'recorded') => {
      calls.push(`gather ${phase}`);
      layer.w = k.noGrad(() => master.clone()).requiresGrad_(true);
    },
    reduce: () => {
      calls.push('reduce');
      grad = values(layer.w!.grad!);
    },
    release: (untilBackward?: boolean) => {
      if (untilBackward) return void calls.push('release until backward'); // the tape keeps the weight
      calls.push('release');
      layer.w!.dispose(); // a use after release would fail: the storage is gone
      layer.w = null;
    },
  };
  const forward = (x: k.Tensor, ctx: { scale: k.Tensor }) => ({ hidden: k.tanh(linear(x, layer.w!)).mul(ctx.scale).add(k.randn(x.shape.slice(0, 1).concat([master.shape[0]]), { backend: 'ref', dtype: 'float64' }).mul(0.01)), routerLogits: null });
  return { layer, calls, hooks, forward, grad: () => grad };
}

test('ZeRO-3 region: released after forward, re-gathered for backward; gradients equal plain autograd (central differences for the input)', () => {
  const master = refLeaf([5, 3], 2);
  const x = refLeaf([4, 3], 3);
  const scale = refLeaf([1], 4, 0.5, 1.5);
  const g = gatheredLayer(master);
  k.manualSeed(7);
  const out = runGathered('layers.0', g.forward as (...a: unknown[]) => unknown, [x, { scale }], g.hooks) as { hidden: k.Tensor; routerLogits: null };
  assert.deepEqual(g.calls, ['gather forward', 'release'], 'forward gathers, runs, releases');
  assert.equal(g.layer.w, null, 'nothing of the weight is held between forward and backward');
  const y = out.hidden.mul(refLeaf([4, 5], 5)).sum();
  y.backward();
  assert.deepEqual(g.calls, ['gather forward', 'release', 'gather backward', 'reduce', 'release']);

  // the same function with the weight as an ordinary leaf, the same RNG draw
  const w = refLeaf([5, 3], 2);
  const x2 = refLeaf([4, 3], 3);
  k.manualSeed(7);
  const plain = k.tanh(linear(x2, w)).mul(scale).add(k.randn([4, 5], { backend: 'ref', dtype: 'float64' }).mul(0.01)).mul(refLeaf([4, 5], 5)).sum();
  plain.backward();
  assertClose([y.item()], [plain.item()], { atol: 0, rtol: 0, what: 'loss (the RNG draw repeated in the recompute)' });
  assertClose(values(x.grad!), values(x2.grad!), { atol: 1e-14, rtol: 0, what: 'd input' });
  assertClose(g.grad()!, values(w.grad!), { atol: 1e-14, rtol: 0, what: 'd weight, handed to reduce()' });

  // the input gradient through the region by central differences
  const check = gatheredLayer(master);
  gradcheck((xi) => {
    k.manualSeed(7);
    return (runGathered('layers.0', check.forward as (...a: unknown[]) => unknown, [xi, { scale }], check.hooks) as { hidden: k.Tensor }).hidden;
  }, [refLeaf([4, 3], 3)], { what: 'zero3 region d input' });
});

test('ZeRO-3 region, recorded (the forward\'s last unit): gathered once, on the tape until its backward, then reduced and released; gradients equal plain autograd', () => {
  const master = refLeaf([5, 3], 2);
  const x = refLeaf([4, 3], 3);
  const scale = refLeaf([1], 4, 0.5, 1.5);
  const g = gatheredLayer(master);
  const out = runGathered('lm_head', g.forward as (...a: unknown[]) => unknown, [x, { scale }], g.hooks, { recorded: true }) as { hidden: k.Tensor };
  assert.deepEqual(g.calls, ['gather recorded', 'release until backward'], 'no release of the weight before backward');
  const y = out.hidden.mul(refLeaf([4, 5], 5)).sum();
  y.backward();
  assert.deepEqual(g.calls, ['gather recorded', 'release until backward', 'reduce', 'release'], 'reduced and released once the unit\'s backward is done, with no second gather');
  const w = refLeaf([5, 3], 2);
  const x2 = refLeaf([4, 3], 3);
  const plain = k.tanh(linear(x2, w)).mul(scale).add(k.randn([4, 5], { backend: 'ref', dtype: 'float64' }).mul(0.01)).mul(refLeaf([4, 5], 5));
  // the random draw differs from the region's (no RNG replay needed: nothing is recomputed), so compare gradients, which do not depend on it
  plain.sum().backward();
  assertClose(values(x.grad!), values(x2.grad!), { atol: 1e-14, rtol: 0, what: 'd input' });
  assertClose(g.grad()!, values(w.grad!), { atol: 1e-14, rtol: 0, what: 'd weight, handed to reduce()' });
});

test('ZeRO-3 region: a unit returning two tensors (MoE router logits) is refused by name', () => {
  const g = gatheredLayer(refLeaf([5, 3], 2));
  const two = (x: k.Tensor) => ({ hidden: linear(x, g.layer.w!), routerLogits: x.mul(2) });
  assert.throws(() => runGathered('model.layers.3', two as (...a: unknown[]) => unknown, [refLeaf([4, 3], 3)], g.hooks),
    /ZeRO stage 3: unit model.layers.3 returned 2 values \(hidden, routerLogits\); .*MoE layers' router logits are not supported/);
  assert.equal(g.layer.w, null, 'released even when the unit fails');
});
