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

test('tidy returns a typed array without walking into it', () => {
  // A walk (Object.values) would reach a tensor hung on the array as a property and keep it alive; not
  // walking, tidy frees it with the scope's other tensors. (Walking a [8, 49152] logits copy element by
  // element cost ~10 ms per serving step.)
  let hung: k.Tensor | null = null;
  const big = new Float32Array(2 ** 16);
  const got = k.tidy(() => {
    hung = k.ones([1]);
    Object.assign(big, { hung });
    return { logits: big };
  });
  assert.equal(got.logits, big);
  assert.equal(hung!.isDisposed, true, 'tidy looked inside the typed array');
});
