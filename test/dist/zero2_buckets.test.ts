// ZeroStage2's mechanism on a 1-rank group (a reduceScatter over one rank is the identity, so the
// shard gradient must hold every parameter's plain-backward gradient, at the place the bucket plan
// gives it): each bucket's reduceScatter starts inside backward as its last gradient arrives, each
// gradient leaves .grad as soon as it is in a bucket, and each bucket's buffer is freed once its
// call is done, so the 'grad' memory peak stays within the shard + 2 buckets + 1 parameter instead
// of reaching the whole gradient twice over.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { initProcessGroup } from '../../src/dist/init.js';
import { BucketRegion } from '../../src/dist/bucket_region.js';
import { ZeroStage2 } from '../../src/dist/zero2.js';
import { CausalLM } from '../../src/models/causal_lm.js';
import { decoderConfig } from '../../src/models/registry.js';
import { assertClose } from '../helpers.js';

test('1 rank: buckets reduce inside backward, .grad is emptied, memory stays bounded, the shard holds the gradients', async () => {
  const pg = await initProcessGroup({ env: {}, timeoutMs: 10_000 });
  const calls = { during: 0, total: 0 };
  let inBackward = false;
  const rs = pg.reduceScatterNow.bind(pg);
  pg.reduceScatterNow = (o, i, op) => (calls.total++, inBackward && calls.during++, rs(o, i, op));
  k.manualSeed(3);
  const model = new CausalLM(decoderConfig({
    model_type: 'llama', vocab_size: 32, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 4, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64,
  }, 'test'));
  const params = model.parameters().filter((p) => p.requiresGrad);
  const ids = Array.from({ length: 2 }, (_, b) => Array.from({ length: 10 }, (_, t) => (b * 7 + t * 3) % 32));
  const lossOf = () => model.forward({ inputIds: k.tensor(ids, { dtype: 'int32', backend: 'cpu' }), labels: k.tensor(ids, { dtype: 'int32', backend: 'cpu' }) }).loss!;
  // the reference: a plain backward's gradients
  lossOf().backward();
  const want = params.map((p) => p.grad!.toFloat32Array().slice());
  for (const p of params) p.zeroGrad();

  const bucketElements = 600;
  const z = new ZeroStage2(pg, [{ params }], bucketElements * 4);
  const psi = params.reduce((n, p) => n + p.numel, 0);
  k.memory.resetPeak();
  const base = k.memory.stats().current.grad;
  z.arm(params);
  inBackward = true;
  lossOf().backward();
  inBackward = false;
  assert.ok(params.every((p) => p.grad === null), 'every gradient left .grad for its bucket');
  await z.finish(params);
  const largest = Math.max(...params.map((p) => p.numel));
  const bound = 4 * (z.shardNumel + 2 * (bucketElements + largest) + largest);
  const peak = k.memory.stats().peak.grad - base;
  assert.ok(peak <= bound, `grad peak ${peak} bytes > shard + 2 buckets + 1 parameter = ${bound} (whole gradient ${4 * psi})`);
  assert.ok(calls.total > 3 && calls.during >= calls.total - 1, `reduceScatters: ${calls.during} of ${calls.total} inside backward`);
  // 1 rank: the shard is the buckets end to end; each bucket's parameters in backward order
  const shard = z.shardGroups[0].params[0].grad!.toFloat32Array();
  const layout = z.shardLayout();
  for (const piece of layout.groups[0].pieces) {
    const i = params.indexOf(piece.param);
    assertClose(shard.subarray(piece.at, piece.at + piece.length), want[i].subarray(piece.start, piece.start + piece.length), { atol: 0, rtol: 0, what: `parameter ${i}` });
  }
  assert.equal(layout.groups[0].pieces.reduce((n, p) => n + p.length, 0), psi, 'every element in the shard');
  pg.destroy();
});

test('a gradient final twice while armed (a weight in two checkpointed regions) is an error naming the parameter, not a second gradient dropped', async () => {
  const pg = await initProcessGroup({ env: {}, timeoutMs: 10_000 });
  const w = k.tensor(Float32Array.from({ length: 4 }, (_, i) => (i + 1) / 5), { shape: [2, 2], backend: 'cpu' }).requiresGrad_(true);
  w.name = 'shared.weight';
  const z = new ZeroStage2(pg, [{ params: [w] }], 4);
  const x = k.tensor(Float32Array.from([1, -2, 0.5, 3]), { shape: [2, 2], backend: 'cpu' });
  const block = (h: k.Tensor): k.Tensor => k.matmul(h, w);
  z.arm([w]);
  const y = k.checkpoint(block, k.checkpoint(block, x));
  assert.throws(() => k.mul(y, y).sum().backward(), /ZeRO stage 2: .*'shared\.weight' was final twice while armed/);
  pg.destroy();
});

test('a weight unused this step takes no bucket buffer before its turn: every bucket fills its place in the region, none a buffer of its own', async () => {
  const pg = await initProcessGroup({ env: {}, timeoutMs: 10_000 });
  const ws = Array.from({ length: 6 }, (_, i) => k.tensor(Float32Array.from({ length: 16 }, (_, j) => Math.sin(i * 16 + j) / 2), { shape: [4, 4], backend: 'cpu' }).requiresGrad_(true));
  const z = new ZeroStage2(pg, [{ params: ws }], 16 * 4); // a bucket per weight, filled w5, w4, ..., w0
  const own: number[] = []; // buckets that found no place in the region
  const fits = BucketRegion.prototype.fits;
  BucketRegion.prototype.fits = function (this: BucketRegion, index: number, length: number) {
    const ok = fits.call(this, index, length);
    if (!ok) own.push(index);
    return ok;
  };
  try {
    z.arm(ws);
    let y = k.tensor(Float32Array.from({ length: 8 }, (_, j) => Math.cos(j)), { shape: [2, 4], backend: 'cpu' });
    for (const w of ws.slice(1)) y = k.tanh(k.matmul(y, w)); // w0, the last bucket, unused
    k.mul(y, y).sum().backward();
    await z.finish(ws);
  } finally {
    BucketRegion.prototype.fits = fits;
  }
  assert.deepEqual(own, [], 'buckets (by fill index) that took a buffer of their own');
  const layout = z.shardLayout();
  const shard = layout.groups[0].shard.grad!.toFloat32Array();
  const w0 = layout.groups[0].pieces.find((p) => p.param === ws[0])!;
  assert.deepEqual([...shard.subarray(w0.at, w0.at + w0.length)], new Array(16).fill(0), 'the unused w0 reduced as zeros');
  pg.destroy();
});

test('finish() without arm() is an error; arming twice drops the first arming', async () => {
  const pg = await initProcessGroup({ env: {}, timeoutMs: 10_000 });
  const w = k.tensor(Float32Array.from({ length: 4 }, (_, i) => (i + 1) / 5), { shape: [2, 2], backend: 'cpu' }).requiresGrad_(true);
  const z = new ZeroStage2(pg, [{ params: [w] }], 4);
  await assert.rejects(z.finish([w]), /ZeRO stage 2: finish\(\) without arm\(\)/);
  z.arm([w]);
  z.arm([w]); // the first arming's hooks would make w's gradient final twice
  k.mul(w, w).sum().backward();
  await z.finish([w]);
  assertClose(z.shardGroups[0].params[0].grad!.toFloat32Array().subarray(0, 4), [0.4, 0.8, 1.2, 1.6], { atol: 1e-7, what: 'd(sum w²)/dw = 2w' });
  pg.destroy();
});
