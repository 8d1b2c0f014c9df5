// DistributedDataParallel's bucketing on a 1-rank group (the sum over one rank is the identity, so
// the gradients must come back unchanged): reductions start inside backward as gradients become
// final (one per full bucket), a backward that is not armed (an accumulation micro-step) issues
// none; buckets start in the plan's order (a weight the backward does not reach goes in as zeros as
// it starts; inside a checkpointed region that is known only at finish(), and its bucket holds the
// later ones back until then); the gradients end as views of one region that every step reuses (the
// all-reduce sums them there, nothing is copied back).
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

test('one big bucket: reduced once, inside backward as its last gradient is final', async () => {
  assert.deepEqual(await run(1 << 20), { duringBackward: 1, total: 1, oneRegion: true, reused: true });
});

test('buckets of one gradient: each reduction starts inside backward, as its gradient is final', async () => {
  assert.deepEqual(await run(4), { duringBackward: 2, total: 2, oneRegion: true, reused: true });
});

/** A 1-rank DDP with a bucket per weight, and the sizes of the buckets it starts, in order. */
async function bucketPerWeight(): Promise<{ pg: Awaited<ReturnType<typeof initProcessGroup>>; ddp: DistributedDataParallel; started: number[] }> {
  const pg = await initProcessGroup({ env: {}, timeoutMs: 5000 });
  const started: number[] = [];
  const allReduceNow = pg.allReduceNow.bind(pg);
  pg.allReduceNow = (t, op) => (started.push(t.numel), allReduceNow(t, op));
  return { pg, ddp: new DistributedDataParallel(pg, 4), started };
}

for (const checkpointed of [false, true]) {
  test(`buckets start in the order of the plan (the parameters reversed), an unused weight as zeros ${checkpointed ? 'at finish() (a checkpointed region hides what backward reaches), holding the later buckets till then' : 'as backward starts (find_unused_parameters)'}`, async () => {
    const { pg, ddp, started } = await bucketPerWeight();
    const sizes = [[3, 4], [4, 5], [4, 2]];
    const [w1, w2, w3] = sizes.map(([r, c]) => k.tensor(Float32Array.from({ length: r * c }, (_, i) => Math.sin(i + r)), { shape: [r, c], backend: 'cpu' }).requiresGrad_(true));
    const x = k.tensor(Float32Array.from({ length: 6 }, (_, i) => i / 3 - 1), { shape: [2, 3], backend: 'cpu' });
    ddp.arm([w1, w2, w3]);
    const h = checkpointed ? k.checkpoint((a) => k.matmul(a, w1), x) : k.matmul(x, w1);
    const y = k.matmul(h, k.tensor(Float32Array.from({ length: 8 }, (_, i) => i / 8), { shape: [4, 2], backend: 'cpu' })); // w2 unused
    k.matmul(y, k.narrow(w3, 0, 0, 2)).sum().backward(); // and w3's first two rows
    if (checkpointed) assert.deepEqual(started, [8], 'inside backward: w3 (the plan\'s first), not w1 (after w2, not known unused)');
    else assert.deepEqual(started, [8, 20, 12], 'inside backward: w3, w2 (zeros since backward began), w1');
    await ddp.finish([w1, w2, w3]);
    assert.deepEqual(started, [8, 20, 12], 'after finish(): w3, w2, w1');
    assertClose(w2.grad!, new Float32Array(20), { atol: 0, rtol: 0, what: 'the unused w2\'s gradient' });
    pg.destroy();
  });
}

test('after the first step the buckets follow the order the gradients arrived in (rank 0\'s), not the parameters reversed', async () => {
  const { pg, ddp, started } = await bucketPerWeight();
  const w1 = k.tensor(Float32Array.from({ length: 8 }, (_, i) => Math.sin(i)), { shape: [4, 2], backend: 'cpu' }).requiresGrad_(true);
  const w2 = k.tensor(Float32Array.from({ length: 12 }, (_, i) => Math.cos(i)), { shape: [3, 4], backend: 'cpu' }).requiresGrad_(true);
  const x = k.tensor(Float32Array.from({ length: 6 }, (_, i) => i / 3 - 1), { shape: [2, 3], backend: 'cpu' });
  const step = async (): Promise<number[]> => {
    started.length = 0;
    ddp.arm([w1, w2]);
    k.matmul(k.matmul(x, w2), w1).sum().backward(); // w1 (listed first) is used last, so its gradient is final first
    await ddp.finish([w1, w2]);
    w1.zeroGrad();
    w2.zeroGrad();
    return [...started];
  };
  assert.deepEqual(await step(), [12, 8], 'the first plan: the parameters reversed (w2, then w1)');
  assert.deepEqual(await step(), [8, 12], 'rebuilt: w1, as its gradient arrived first');
  assert.deepEqual(await step(), [8, 12], 'and kept');
  pg.destroy();
});

test('a weight unused in the first step goes last in the learned plan, so that used later it holds no bucket back', async () => {
  const { pg, ddp, started } = await bucketPerWeight();
  const [w1, w2, w3] = [[3, 4], [4, 4], [4, 2]].map(([r, c]) => k.tensor(Float32Array.from({ length: r * c }, (_, i) => Math.sin(i + r * c)), { shape: [r, c], backend: 'cpu' }).requiresGrad_(true));
  const x = k.tensor(Float32Array.from({ length: 6 }, (_, i) => i / 3 - 1), { shape: [2, 3], backend: 'cpu' });
  const step = async (useW2: boolean): Promise<number[]> => {
    started.length = 0;
    ddp.arm([w1, w2, w3]);
    const h = k.matmul(x, w1);
    k.matmul(useW2 ? k.matmul(h, w2) : h, w3).sum().backward();
    await ddp.finish([w1, w2, w3]);
    for (const w of [w1, w2, w3]) w.zeroGrad();
    return [...started];
  };
  assert.deepEqual(await step(false), [8, 16, 12], 'the first plan: w3, w2 (zeros from the start), w1');
  assert.deepEqual(await step(true), [8, 12, 16], 'learned: w3 and w1 as they arrived, the unused w2 last');
  pg.destroy();
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

test('finish() without arm() is an error; arming twice drops the first arming', async () => {
  const { pg, ddp } = await bucketPerWeight();
  const w = k.tensor(Float32Array.from({ length: 4 }, (_, i) => (i + 1) / 5), { shape: [2, 2], backend: 'cpu' }).requiresGrad_(true);
  await assert.rejects(ddp.finish([w]), /data parallel: finish\(\) without arm\(\)/);
  ddp.arm([w]);
  ddp.arm([w]); // the first arming's hooks would make w's gradient final twice
  k.mul(w, w).sum().backward();
  await ddp.finish([w]);
  assertClose(w.grad!, [0.4, 0.8, 1.2, 1.6], { atol: 1e-7, rtol: 0, what: 'd(sum w²)/dw = 2w' });
  pg.destroy();
});
