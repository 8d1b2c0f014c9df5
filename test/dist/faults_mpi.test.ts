// Faults on the MPI transport (under Open MPI's and MPICH's mpirun; faulty_rank.ts, 3 ranks, rank 2
// faulty): a hung rank makes the others fail naming it once the timeout passes; ranks in
// different calls fail naming both; a rank that throws or is killed ends the whole job (the
// thrower's non-zero exit makes mpirun stop the rest) and the launcher names it with its message,
// long before the timeout. Never a hang.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { LaunchResult } from '../../src/dist/launch.js';
import type { MpiImplementation } from '../../src/dist/mpi_library.js';
import { launchMpi } from '../../src/dist/mpirun.js';
import { mpiMissing } from './collective_suite.js';
import { childArgs } from '../child_js.js';

const RANK_FILE = fileURLToPath(new URL('./faulty_rank.ts', import.meta.url));
const TIMEOUT_MS = 3000;

type Report = { error?: string; ok?: boolean; ms: number };

async function run(impl: MpiImplementation, fault: string): Promise<{ r: LaunchResult; reports: Map<number, Report>; stderr: string[]; ms: number }> {
  const reports = new Map<number, Report>();
  const stderr: string[] = [];
  const t0 = Date.now();
  const r = await launchMpi({
    implementation: impl, nproc: 3, command: process.execPath, args: childArgs(RANK_FILE),
    env: { FAULT: fault, FAULT_RANK: '2', TIMEOUT_MS: String(TIMEOUT_MS) },
    onStdout: (rank, line) => void (line.startsWith('{') && reports.set(rank, JSON.parse(line) as Report)),
    onStderr: (rank, line) => void stderr.push(`[rank ${rank}] ${line}`),
  });
  return { r, reports, stderr, ms: Date.now() - t0 };
}

for (const impl of ['openmpi', 'mpich'] as const) {
  const skip = mpiMissing(impl);

  test(`a hung rank: the others fail naming it once the timeout passes (${impl})`, { skip }, async () => {
    const { r, reports, stderr } = await run(impl, 'hang');
    // the first survivor to report MPI_Abort's the job at exit, which may stop the other before it prints
    assert.ok(reports.size >= 1, `no survivor reported\n${stderr.join('\n')}`);
    for (const [rank, rep] of reports) {
      assert.ok(rank !== 2 && rep.error, `rank ${rank} reported ${JSON.stringify(rep)}`);
      assert.match(rep.error, /rank 2 did not arrive within 3000 ms \(it does not answer/);
      assert.ok(rep.ms >= TIMEOUT_MS && rep.ms < TIMEOUT_MS + 4000, `took ${rep.ms} ms`);
    }
    assert.notEqual(r.exitCode, 0, 'the job must fail (the survivors MPI_Abort it at exit)');
  });

  test(`ranks in different calls fail naming both calls (${impl})`, { skip }, async () => {
    const { r, reports, stderr } = await run(impl, 'mismatch');
    const texts = [...reports.values()].map((x) => x.error ?? '').concat(stderr).join('\n');
    assert.match(texts, /ranks disagree on the call: rank [01] is in allReduce of 1000 elements .*rank 2 in allGather of 1000/);
    assert.notEqual(r.exitCode, 0);
  });

  test(`a rank that throws: the launcher names it with its message (${impl})`, { skip }, async () => {
    const { r, ms } = await run(impl, 'throw');
    assert.equal(r.failure?.rank, 2, JSON.stringify(r));
    assert.match(r.failure.message, /a deliberate failure in rank 2/);
    assert.ok(ms < 20_000, `took ${ms} ms`);
  });

  test(`a rank killed by SIGKILL: the job ends at once, the launcher naming the killed rank (${impl})`, { skip }, async () => {
    const { r, reports, ms } = await run(impl, 'kill');
    assert.notEqual(r.exitCode, 0);
    assert.ok(ms < 20_000, `took ${ms} ms`);
    if (impl === 'openmpi') {
      // Open MPI's mpirun names the rank a signal killed ("process rank 2 ... exited on signal 9")
      assert.equal(r.failure?.rank, 2, JSON.stringify(r));
      assert.equal(r.failure.signal, 'SIGKILL');
    } else {
      // MPICH's hydra kills the other ranks at once and names a pid; the launcher names the rank it saw
      // die first on this machine, which under heavy load can be one hydra stopped in the same instant
      const survivors = [...reports.values()].map((x) => x.error ?? '');
      const named = r.failure?.rank === 2 || survivors.some((e) => /rank 2 \(pid \d+\) exited/.test(e));
      assert.ok(named || r.failure?.signal === 'SIGKILL', JSON.stringify(r));
    }
  });
}
