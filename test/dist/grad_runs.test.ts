// gradRuns: where ZeRO-3 puts an arena's gradient elements in its unit's flat gradient. The layout
// is rank-major (block r of every trainable arena, then block r + 1), so that one reduceScatter of
// the unit gives rank r its block of every arena. Checked by its invariant: over every element of
// every arena (padding included, split into odd runs), each flat position is written exactly once,
// and element j of an arena lands in rank floor(j / block)'s block at the arena's gradAt.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { gradRuns } from '../../src/dist/zero3.js';

for (const N of [1, 2, 4]) {
  test(`N = ${N}: every element of three padded arenas in its rank's block, each flat position once`, () => {
    const lengths = [1, 7, 33].map((n) => Math.ceil(n / N) * N); // a tiny arena (the norms), a padded one
    let gradAt = 0;
    const arenas = lengths.map((length) => {
      const a = { length, gradAt };
      gradAt += length / N;
      return a;
    });
    const unitBlock = gradAt;
    const owner = new Int32Array(unitBlock * N).fill(-1);
    arenas.forEach((a, ai) => {
      const block = a.length / N;
      // the arena in runs of 1, 5, 1, 5, ... elements, as parameters of odd sizes would give
      for (let from = 0, i = 0; from < a.length; i++) {
        const n = Math.min(i % 2 ? 5 : 1, a.length - from);
        let covered = 0;
        for (const run of gradRuns(a, N, from, n, unitBlock)) {
          assert.equal(run.src, covered, 'runs follow each other in the source');
          for (let e = 0; e < run.length; e++) {
            const j = from + run.src + e;
            const at = run.at + e;
            assert.equal(owner[at], -1, `flat position ${at} written twice`);
            owner[at] = ai;
            assert.equal(at, Math.floor(j / block) * unitBlock + a.gradAt + (j % block), `arena ${ai} element ${j}`);
          }
          covered += run.length;
        }
        assert.equal(covered, n);
        from += n;
      }
    });
    assert.ok(owner.every((o) => o >= 0), 'every flat position written');
  });
}
