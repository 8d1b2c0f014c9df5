// tidy's search of its result for tensors to keep: it finds them inside arrays, objects and Maps,
// and does not walk typed arrays (they hold numbers only; walking one element by element made a
// tidy that returns a [8, 49152] logits copy cost ~10 ms, a serving step's biggest overhead).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';

test('tidy keeps tensors nested in arrays, objects and Maps and frees the rest', () => {
  let dropped: k.Tensor | null = null;
  const out = k.tidy(() => {
    dropped = k.ones([2]);
    return { list: [k.ones([1])], map: new Map([['a', k.zeros([3])]]), data: new Float32Array(4) };
  });
  assert.equal(dropped!.isDisposed, true);
  assert.equal(out.list[0].isDisposed, false);
  assert.equal(out.map.get('a')!.isDisposed, false);
  out.list[0].dispose();
  out.map.get('a')!.dispose();
});

test('tidy returns a large typed array without walking its elements', () => {
  // 2^23 floats: walked one by one (Object.values) this took ~200 ms; skipped, well under 1 ms
  const big = new Float32Array(2 ** 23);
  const t0 = performance.now();
  const got = k.tidy(() => ({ logits: big }));
  const ms = performance.now() - t0;
  assert.equal(got.logits, big);
  assert.ok(ms < 40, `tidy took ${ms.toFixed(1)} ms over a typed array of ${big.length} elements (expected < 40 ms: it must not walk them)`);
});
