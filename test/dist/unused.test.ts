// A graph that differs between ranks (an MoE layer's experts with no tokens on one rank, a branch
// taken on some batches): each rank's gradients become final in a different order, and a weight
// unused on a rank has none until finish(). Data parallel must still sum each weight's gradient
// with the same weight's on every other rank, so its buckets are fixed by the parameter order and
// reduced in that order (torch's DDP), not formed and started in the order gradients arrive.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { runRanks } from './ranks.js';

for (const share of ['1', '0']) {
  test(`2 ranks, each skipping a different weight, ${share === '1' ? 'shared memory in place' : 'KESTREL_DIST_SHARE=0'}: stages 0-2 sum the same weights as one process does`, async () => {
    const runs = await runRanks(join(import.meta.dirname, 'unused_rank.ts'), 2, () => ({ KESTREL_DIST_SHARE: share }));
    for (const r of runs) {
      assert.equal(r.code, 0, `rank ${r.rank} failed: ${r.stderr}`);
      const got = JSON.parse(r.stdout.trim()) as Record<string, number>;
      for (const stage of ['stage0', 'stage1', 'stage2']) assert.ok(got[stage] <= 1e-6, `rank ${r.rank} ${stage}: gradients differ from the one-process sum by ${got[stage]} (${JSON.stringify(got)})`);
    }
  });
}
