// Expert parallelism over real rank processes: 2 and 4 ranks, each owning 2 or 1 of the 4 experts
// of every MoE layer (holding only those weights) and exchanging tokens by all-to-all, equal 1 rank
// training on the whole batch:
// the same loss curve over 3 AdamW steps and the same final weights (every dense weight on every
// rank, each expert on its owner) within float32 tolerance (GEMMs over different row counts round
// differently in the last bits).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertClose } from '../helpers.js';
import { kestrelSegments, segmentsLeft, runRanks } from './ranks.js';

interface RankOut {
  rank: number;
  losses: number[];
  weights: Record<string, number[]>;
  grouped: boolean;
  paramBytesBefore: number;
  paramBytes: number;
  expertBytes: number;
}

async function run(n: number): Promise<RankOut[]> {
  const runs = await runRanks(new URL('./expert_parallel_rank.ts', import.meta.url).pathname, n, () => ({}), 120_000);
  for (const r of runs) assert.equal(r.code, 0, `rank ${r.rank} of ${n} failed:\n${r.stderr}`);
  return runs.map((r) => JSON.parse(r.stdout.trim().split('\n').pop()!) as RankOut);
}

test('expert parallel on 2 and 4 ranks equals 1 rank: loss curve and final weights', async () => {
  const before = kestrelSegments();
  const [one] = await run(1);
  assert.ok(one.grouped);
  assert.ok(one.losses[2] < one.losses[0], `the loss goes down: ${one.losses.join(' -> ')}`);
  for (const n of [2, 4]) {
    const ranks = await run(n);
    const perExpert = 4 / n;
    for (const r of ranks) {
      // a rank keeps 1/n of the expert weights: the rest of its parameter memory was released
      assert.equal(r.expertBytes, one.expertBytes / n, `${n} ranks: rank ${r.rank} expert bytes`);
      assert.equal(r.paramBytesBefore - r.paramBytes, one.expertBytes - one.expertBytes / n, `${n} ranks: rank ${r.rank} released bytes`);
      assertClose(r.losses, one.losses, { atol: 1e-6, rtol: 1e-5, what: `${n} ranks: rank ${r.rank} loss curve` });
      const own = Object.keys(r.weights);
      for (const [name, want] of Object.entries(one.weights)) {
        const e = /\.experts\.(\d+)\./.exec(name);
        const owner = e ? Math.floor(Number(e[1]) / perExpert) : r.rank;
        if (owner !== r.rank) {
          assert.ok(!own.includes(name), `${n} ranks: rank ${r.rank} trains ${name}, owned by rank ${owner}`);
          continue;
        }
        assertClose(r.weights[name], want, { atol: 2e-5, rtol: 1e-4, what: `${n} ranks: rank ${r.rank} ${name}` });
      }
    }
  }
  assert.deepEqual(segmentsLeft(before), []);
});
