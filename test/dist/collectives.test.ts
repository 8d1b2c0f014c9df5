// Every collective (allReduce sum/avg/max/min, reduceScatter, broadcast, allGather, allToAll,
// send/recv, barrier, a subgroup, an async handle) on every carried dtype and odd sizes, with 1-4
// real rank processes started by the launcher, each rank checking bit for bit against the
// single-process reference it computes itself (collective_rank.ts). 64 KiB slots make the larger
// sizes cross piece boundaries; 4 ranks run oversubscribed on 2 cores.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { launch } from '../../src/dist/launch.js';
import { kestrelSegments } from './ranks.js';

const RANK_FILE = fileURLToPath(new URL('./collective_rank.ts', import.meta.url));

for (const n of [1, 2, 3, 4]) {
  test(`collectives match the single-process reference on ${n} rank${n > 1 ? 's' : ''}`, async () => {
    const before = kestrelSegments();
    const errors: string[] = [];
    const r = await launch({
      nproc: n, command: process.execPath, args: ['--import', 'tsx', RANK_FILE], stdout: 'ignore',
      // 1M+3 float32 on the 4-rank run: 64 pieces and a ragged last one
      env: { KESTREL_DIST_SLOT_BYTES: '65536', COLLECTIVE_HUGE: n === 4 ? String((1 << 20) + 3) : '0' },
      onStderr: (rank, line) => void (line && errors.push(`[rank ${rank}] ${line}`)),
    });
    assert.equal(r.exitCode, 0, `${r.failure ? `rank ${r.failure.rank}: ${r.failure.message}` : ''}\n${errors.join('\n')}`);
    assert.deepEqual(kestrelSegments().filter((s) => !before.includes(s)), [], 'segments left in /dev/shm');
  });
}
