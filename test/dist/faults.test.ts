// A dead, hung or absent rank makes the others fail with a message naming it, within the
// timeout (never a hang), and leaves no process or /dev/shm segment behind. 3 ranks, rank 2 faulty.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { kestrelSegments, segmentsLeft, runRanks } from './ranks.js';

const RANK_FILE = fileURLToPath(new URL('./faulty_rank.ts', import.meta.url));
const TIMEOUT_MS = 3000;

async function survivors(fault: string): Promise<{ error: string; ms: number }[]> {
  const before = kestrelSegments();
  const runs = await runRanks(RANK_FILE, 3, () => ({ FAULT: fault, FAULT_RANK: '2', TIMEOUT_MS: String(TIMEOUT_MS) }));
  assert.deepEqual(segmentsLeft(before), [], 'segments left in /dev/shm');
  return runs.filter((r) => r.rank !== 2).map((r) => {
    assert.equal(r.code, 0, `rank ${r.rank} crashed instead of reporting: ${r.stderr}`);
    const report = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { error?: string; ms: number };
    assert.ok(report.error, `rank ${r.rank} did not fail: ${r.stdout}`);
    return { error: report.error, ms: report.ms };
  });
}

test('a killed rank: the others fail naming it, long before the timeout', async () => {
  for (const s of await survivors('kill')) {
    assert.match(s.error, /rank 2 \(pid \d+\) exited/);
    assert.ok(s.ms < TIMEOUT_MS, `took ${s.ms} ms`);
  }
});

test('a hung rank: the others fail naming it once the timeout passes', async () => {
  for (const s of await survivors('hang')) {
    assert.match(s.error, /rank 2 did not arrive within 3000 ms/);
    assert.ok(s.ms >= TIMEOUT_MS && s.ms < TIMEOUT_MS + 2000, `took ${s.ms} ms`);
  }
});

test('a rank that throws (and exits): the others name it', async () => {
  for (const s of await survivors('throw')) assert.match(s.error, /rank 2 \(pid \d+\) exited/);
});

test('a rank that never starts: the rendezvous names it on every rank', async () => {
  for (const s of await survivors('absent')) {
    assert.match(s.error, /rank 2 did not arrive at 127\.0\.0\.1:\d+ within 3000 ms/);
    assert.ok(s.ms < TIMEOUT_MS + 2000, `took ${s.ms} ms`);
  }
});

test('a rank in a different call: every rank fails naming both calls instead of mixing their bytes', async () => {
  const runs = await runRanks(RANK_FILE, 3, () => ({ FAULT: 'mismatch', FAULT_RANK: '2', TIMEOUT_MS: String(TIMEOUT_MS) }));
  for (const s of runs.filter((r) => r.rank !== 2)) assert.match(s.stdout, /ranks disagree on the call: rank \d is in allReduce of 1000 elements .*rank 2 in allGather of 1000/);
  assert.match(runs[2].stderr, /ranks disagree on the call: rank 2 is in allGather of 1000 elements/);
});
