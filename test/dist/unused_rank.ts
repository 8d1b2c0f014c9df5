// One rank of the data-dependent-graph test (test/dist/unused.test.ts): four weights, of which each
// rank's forward uses a different three (as an MoE layer skips the experts its tokens do not pick),
// so the ranks' gradients become final in different orders. Stages 0, 1 and 2, one weight per
// bucket, must still sum the same weight's gradient on every rank: each rank computes the answer
// alone first (both ranks' losses, no data parallel) and prints the largest difference per stage.
import * as k from '../../src/index.js';
import { DistributedDataParallel } from '../../src/dist/ddp.js';
import { initProcessGroup } from '../../src/dist/init.js';
import { ZeroStage1 } from '../../src/dist/zero1.js';
import { ZeroStage2 } from '../../src/dist/zero2.js';

const world = await initProcessGroup({ timeoutMs: 20_000 });
const N = world.size;
const weights = (): k.Tensor[] => Array.from({ length: 4 }, (_, i) =>
  k.tensor(Float32Array.from({ length: 16 }, (_, j) => Math.sin(i * 16 + j) / 2), { shape: [4, 4], backend: 'cpu' }).requiresGrad_(true));
/** rank r skips weight r + 1 (the last weight is used by every rank) */
const lossOf = (ws: readonly k.Tensor[], r: number): k.Tensor => {
  let y = k.tensor(Float32Array.from({ length: 8 }, (_, j) => Math.cos(r * 8 + j)), { shape: [2, 4], backend: 'cpu' });
  ws.forEach((w, i) => void (i !== (r % 3) + 1 && (y = k.tanh(k.matmul(y, w)))));
  return k.mul(y, y).sum();
};
const reference = weights();
for (let r = 0; r < N; r++) lossOf(reference, r).backward();
const want = reference.map((w) => w.grad!.toFloat32Array());

const out: Record<string, number> = {};
for (const stage of [0, 1, 2]) {
  const ws = weights();
  const bucketBytes = 16 * 4; // one weight per bucket
  const dp = stage === 0 ? new DistributedDataParallel(world, bucketBytes)
    : new (stage === 1 ? ZeroStage1 : ZeroStage2)(world, [{ params: ws }], bucketBytes);
  let err = 0;
  for (let step = 0; step < 2; step++) { // twice: the second step reuses what the first made
    dp.arm(ws);
    k.tidy(() => lossOf(ws, world.rank).backward());
    await dp.finish(ws);
    const layout = dp.shardLayout();
    if (!layout) ws.forEach((w, i) => w.grad!.toFloat32Array().forEach((g, j) => (err = Math.max(err, Math.abs(g - want[i][j])))));
    else for (const { shard, pieces } of layout.groups) {
      const g = shard.grad!.toFloat32Array();
      for (const p of pieces) for (let j = 0; j < p.length; j++) err = Math.max(err, Math.abs(g[p.at + j] - want[ws.indexOf(p.param)][p.start + j]));
    }
    for (const w of ws) w.zeroGrad();
  }
  out[`stage${stage}`] = err;
}
process.stdout.write(JSON.stringify({ rank: world.rank, ...out }) + '\n');
world.destroy();
