// BucketRegion (src/dist/bucket_region.ts): two places, the even-numbered buffer at the region's
// start and the odd one at its end, sized for the largest pair of neighbours. A buffer gets its
// place only when that end is free and it would not overlap the other end's buffer (ZeRO-3 may
// hold a unit's gradient longer than its neighbour's, across micro-steps); otherwise a fresh buffer
// of its own. Padding past `used` is zero.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { BucketRegion } from '../../src/dist/bucket_region.js';

test('BucketRegion: places at both ends, never overlapping; a buffer that would overlap gets its own; padding zeroed', () => {
  assert.equal(BucketRegion.sizeFor([3, 5, 2]), 8, 'the largest neighbour pair: 3 + 5');
  const region = new BucketRegion(k.full([8], 7, { backend: 'cpu' }));
  const [a, b, c, d] = [{}, {}, {}, {}];
  const inRegion = (t: k.Tensor): boolean => t.storage === (region as unknown as { region: k.Tensor }).region.storage;

  const first = region.acquire(a, 0, 3, 2, 'cpu');
  assert.ok(inRegion(first) && first.layout.offset === 0, 'the even buffer at the start');
  assert.deepEqual(Array.from(k.toFloat32Array(first)), [7, 7, 0], 'elements from `used` on are zero, the rest left to the caller');
  const second = region.acquire(b, 1, 5, 5, 'cpu');
  assert.ok(inRegion(second) && second.layout.offset === 3, 'the odd buffer at the end');

  assert.equal(region.fits(2, 2), false, 'the start is still held');
  region.release(a);
  assert.equal(region.fits(2, 4), false, '4 at the start would overlap the 5 held at the end');
  const own = region.acquire(c, 2, 4, 4, 'cpu');
  assert.ok(!inRegion(own), 'a buffer of its own instead');
  assert.deepEqual(Array.from(k.toFloat32Array(own)), [0, 0, 0, 0]);
  assert.equal(region.fits(2, 3), true);
  const third = region.acquire(d, 2, 3, 3, 'cpu');
  assert.ok(inRegion(third) && third.layout.offset === 0);
  region.release(b);
  assert.equal(region.fits(3, 5), true, 'the end is free again');
  for (const t of [first, second, own, third]) t.dispose();
  region.dispose();
});
