// ZeRO-2's static bucket plan and the shard pieces: invariants checked against plain arithmetic.
// Buckets hold whole parameters in backward (reverse) order, never more than the bucket size
// unless one parameter alone is larger, each padded to a multiple of N; the N ranks' slices of
// every bucket cover each parameter's elements exactly once (so a reduceScatter of the bucket
// leaves every gradient element with exactly one owner), at the shard offsets the plan gives.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { piecesIn, planBuckets } from '../../src/dist/bucket_plan.js';

const sizes = [7, 33, 1, 257, 16, 5];
const params = sizes.map((n) => k.zeros([n], { backend: 'ref' }));

for (const N of [1, 2, 3, 4]) {
  test(`bucket plan for ${N} rank(s): reverse order, bounded, padded, every element owned once`, () => {
    const bucket = 40;
    const plan = planBuckets(params, N, bucket);
    assert.deepEqual(plan.buckets.flatMap((b) => b.params), [...params].reverse(), 'whole parameters in backward order');
    let shardOffset = 0;
    for (const b of plan.buckets) {
      const used = b.params.reduce((s, p) => s + p.numel, 0);
      assert.ok(used <= bucket || b.params.length === 1, `bucket of ${used} elements holds ${b.params.length} parameters`);
      assert.equal(b.length, Math.ceil(used / N) * N);
      assert.deepEqual(b.offsets, b.params.map((_, i) => b.params.slice(0, i).reduce((s, p) => s + p.numel, 0)));
      assert.equal(b.shardOffset, shardOffset);
      shardOffset += b.length / N;
    }
    assert.equal(plan.shardLength, shardOffset);
    // every element of every parameter: exactly one (rank, shard position)
    const owner = new Map(params.map((p) => [p, new Int32Array(p.numel).fill(-1)]));
    const shardUse = Array.from({ length: N }, () => new Uint8Array(plan.shardLength));
    for (let r = 0; r < N; r++) {
      for (const b of plan.buckets) {
        for (const piece of piecesIn(b.params, r * (b.length / N), b.length / N, b.shardOffset)) {
          for (let e = 0; e < piece.length; e++) {
            assert.equal(owner.get(piece.param)![piece.start + e], -1, 'an element owned twice');
            owner.get(piece.param)![piece.start + e] = r;
            assert.equal(shardUse[r][piece.at + e]++, 0, 'a shard position used twice');
          }
          assert.ok(piece.at >= b.shardOffset && piece.at + piece.length <= b.shardOffset + b.length / N, 'the piece stays in its bucket slice');
        }
      }
    }
    for (const [p, o] of owner) assert.ok(o.every((r) => r >= 0), `parameter of ${p.numel} elements not fully owned`);
  });
}

test('piecesIn cuts parameters laid end to end at the range bounds', () => {
  const [a, b, c] = [k.zeros([6], { backend: 'ref' }), k.zeros([3], { backend: 'ref' }), k.zeros([4], { backend: 'ref' })];
  assert.deepEqual(piecesIn([a, b, c], 4, 6, 10), [
    { param: a, start: 4, length: 2, at: 10 },
    { param: b, start: 0, length: 3, at: 12 },
    { param: c, start: 0, length: 1, at: 15 },
  ]);
  assert.deepEqual(piecesIn([a, b, c], 13, 3, 0), [], 'past the end: padding only');
  assert.throws(() => planBuckets([a], 2, 0), /bucket size must be at least 1 element, got 0/);
});
