// DistributedDataParallel's bucketing on a 1-rank group (the sum over one rank is the identity, so
// the gradients must come back unchanged): reductions start inside backward as gradients become
// final (one per full bucket), a backward that is not armed (an accumulation micro-step) issues
// none, and finish() flushes the last bucket; the gradients end as views of one region that every
// step reuses (the all-reduce sums them there, nothing is copied back).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { DistributedDataParallel } from '../../src/dist/ddp.js';
import { initProcessGroup } from '../../src/dist/init.js';
import { assertClose } from '../helpers.js';

async function run(bucketBytes: number): Promise<{ duringBackward: number; total: number; oneRegion: boolean; reused: boolean }> {
  const pg = await initProcessGroup({ env: {}, timeoutMs: 5000 });
  let calls = 0;
  // count the reductions DDP issues (allReduceNow where the transport starts calls inside backward)
  const [allReduce, allReduceNow] = [pg.allReduce.bind(pg), pg.allReduceNow.bind(pg)];
  pg.allReduce = (t, op) => (calls++, allReduce(t, op));
  pg.allReduceNow = (t, op) => (calls++, allReduceNow(t, op));
  const ddp = new DistributedDataParallel(pg, bucketBytes);
  const w1 = k.tensor(Float32Array.from({ length: 12 }, (_, i) => (i - 5) / 7), { shape: [3, 4], backend: 'cpu' }).requiresGrad_(true);
  const w2 = k.tensor(Float32Array.from({ length: 8 }, (_, i) => (i + 1) / 9), { shape: [4, 2], backend: 'cpu' }).requiresGrad_(true);
  const x = k.tensor(Float32Array.from({ length: 6 }, (_, i) => i / 3 - 1), { shape: [2, 3], backend: 'cpu' });
  const loss = () => { const y = k.matmul(k.matmul(x, w1), w2); return k.mul(y, y).sum(); };
  loss().backward(); // a micro-step: accumulates, reduces nothing
  assert.equal(calls, 0, 'an unarmed backward issued reductions');
  ddp.arm([w1, w2]);
  loss().backward();
  const duringBackward = calls;
  const want = [w1.grad!.toFloat32Array().slice(), w2.grad!.toFloat32Array().slice()];
  await ddp.finish([w1, w2]);
  assertClose(w1.grad!, want[0], { atol: 0, rtol: 0, what: 'w1.grad' });
  assertClose(w2.grad!, want[1], { atol: 0, rtol: 0, what: 'w2.grad' });
  const total = calls;
  const region = w1.grad!.storage;
  const oneRegion = w2.grad!.storage === region && region.numel === w1.numel + w2.numel;
  // the next step (one backward: half the first step's two equal ones, exactly): the trainer frees
  // the gradients; backward makes new ones, which go into the same region
  w1.zeroGrad();
  w2.zeroGrad();
  ddp.arm([w1, w2]);
  loss().backward();
  await ddp.finish([w1, w2]);
  assertClose(w1.grad!, want[0].map((g) => g / 2), { atol: 0, rtol: 0, what: 'w1.grad, second step' });
  const reused = w1.grad!.storage === region && w2.grad!.storage === region;
  pg.destroy();
  return { duringBackward, total, oneRegion, reused };
}

test('one big bucket: reduced once, at finish()', async () => {
  assert.deepEqual(await run(1 << 20), { duringBackward: 0, total: 1, oneRegion: true, reused: true });
});

test('buckets of one gradient: each reduction starts inside backward, as its gradient is final', async () => {
  assert.deepEqual(await run(4), { duringBackward: 2, total: 2, oneRegion: true, reused: true });
});

test('a gradient final twice in one backward (a weight in two checkpointed regions) is an error naming the parameter', async () => {
  const pg = await initProcessGroup({ env: {}, timeoutMs: 5000 });
  const ddp = new DistributedDataParallel(pg, 4); // a bucket per gradient: the first is already reduced in place
  const w = k.tensor(Float32Array.from({ length: 4 }, (_, i) => (i + 1) / 5), { shape: [2, 2], backend: 'cpu' }).requiresGrad_(true);
  w.name = 'shared.weight';
  const x = k.tensor(Float32Array.from([1, -2, 0.5, 3]), { shape: [2, 2], backend: 'cpu' });
  const block = (h: k.Tensor): k.Tensor => k.matmul(h, w);
  ddp.arm([w]);
  const y = k.checkpoint(block, k.checkpoint(block, x));
  assert.throws(() => k.mul(y, y).sum().backward(), /'shared\.weight' was final twice while armed/);
  pg.destroy();
});
