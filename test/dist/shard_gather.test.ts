// ShardGatherer (src/dist/shard_gather.ts) in one process against a simulated group of N ranks
// whose allGather serves every rank's known shard: with chunks (13 elements per rank) that cut
// buckets and span several, each parameter element must come from the rank that owns it by the
// bucket layout's definition: element x of a bucket of length L lies in rank floor(x / (L/N))'s
// slice, at that rank's shard position shardOffset + x mod L/N (checked element by element, not
// by the gatherer's piece arithmetic). Odd sizes (1, 7, 33, 257) make ragged slices and padding.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { backendOf } from '../../src/backend/index.js';
import { planBuckets } from '../../src/dist/bucket_plan.js';
import { Work } from '../../src/dist/process_group.js';
import { type GatherGroup, ShardGatherer } from '../../src/dist/shard_gather.js';

/** Rank r's shard value at position i: distinct for every (rank, position). */
const value = (r: number, i: number): number => r * 10000 + i + 0.5;

/** Every parameter element holds the value of the rank and shard position the bucket layout gives it. */
function expectOwners(buckets: ReturnType<typeof planBuckets>['buckets'], N: number, what: string): void {
  for (const b of buckets) {
    const slice = b.length / N;
    b.params.forEach((p, j) => {
      const got = p.toFloat32Array();
      for (let e = 0; e < p.numel; e++) {
        const x = b.offsets[j] + e;
        assert.equal(got[e], value(Math.floor(x / slice), b.shardOffset + (x % slice)), `${what}parameter of ${p.numel} elements, element ${e}: from rank ${Math.floor(x / slice)}`);
      }
    });
  }
}

for (const N of [2, 3]) test(`ShardGatherer on ${N} simulated ranks: 13-element chunks across 40-element buckets put every rank's slice where the layout says`, async () => {
  const sizes = [7, 33, 1, 257, 16, 5];
  const params = sizes.map((n) => k.zeros([n], { backend: 'cpu' }));
  const plan = planBuckets(params, N, 40);
  const shards = Array.from({ length: N }, (_, r) => Float32Array.from({ length: plan.shardLength }, (_, i) => value(r, i)));
  const me = N - 1;
  let lo = 0; // the calls come in shard order: each one's range starts where the last ended
  const calls: number[] = [];
  const group = {
    size: N,
    allGather(out: k.Tensor, mine: k.Tensor): Work {
      const n = mine.numel;
      assert.deepEqual(Array.from(mine.toFloat32Array()), Array.from(shards[me].subarray(lo, lo + n)), 'this rank sends its own shard range');
      const all = new Float32Array(N * n);
      for (let r = 0; r < N; r++) all.set(shards[r].subarray(lo, lo + n), r * n);
      const src = k.tensor(Array.from(all), { backend: 'cpu' });
      backendOf(out).kernels.copy(src, out);
      src.dispose();
      calls.push(n);
      lo += n;
      return new Work(Promise.resolve());
    },
  };
  const shard = k.tensor(Array.from(shards[me]), { backend: 'cpu' });
  const gatherer = new ShardGatherer(group, 13 * 4 * N);
  await gatherer.gather(shard, plan.buckets);
  assert.equal(calls.reduce((a, b) => a + b, 0), plan.shardLength, 'the whole shard, once');
  assert.ok(calls.every((n) => n <= 13), `chunks of at most 13 elements per rank: ${calls.join(', ')}`);
  expectOwners(plan.buckets, N, '');
  gatherer.dispose();
  shard.dispose();
  for (const p of params) p.dispose();
});
