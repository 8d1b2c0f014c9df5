// The collective suite (collective_rank.ts) as tests, on one transport: 1-4 real rank processes,
// started by Kestrel's launcher (shared memory) or by Open MPI's / MPICH's mpirun (MPI), each
// rank checking its results against the single-process reference it computes itself. 64 KiB
// slots make the larger sizes cross piece boundaries; 4 ranks run oversubscribed on 2 cores.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type LaunchResult, launch } from '../../src/dist/launch.js';
import type { MpiImplementation } from '../../src/dist/mpi_library.js';
import { launchMpi } from '../../src/dist/mpirun.js';
import { kestrelSegments, segmentsLeft } from './ranks.js';
import { childArgs } from '../child_js.js';

const RANK_FILE = fileURLToPath(new URL('./collective_rank.ts', import.meta.url));
const MPIRUN: Record<MpiImplementation, string> = { openmpi: 'mpirun.openmpi', mpich: 'mpirun.mpich' };

export type SuiteTransport = 'shm' | MpiImplementation;

/** Why an MPI suite cannot run here (its mpirun is missing), or false; in CI a missing MPI is a failure. */
export function mpiMissing(impl: MpiImplementation): string | false {
  const ok = spawnSync(MPIRUN[impl], ['--version']).status === 0;
  if (ok) return false;
  if (process.env.CI === 'true') throw new Error(`CI must have ${MPIRUN[impl]} (.ci/run installs openmpi-bin and mpich)`);
  return `${MPIRUN[impl]} is not installed (apt-get install ${impl === 'openmpi' ? 'openmpi-bin libopenmpi-dev' : 'mpich libmpich-dev'})`;
}

/** Runs the rank file as n ranks on a transport; every stderr line is kept for the failure message. */
export async function runSuite(transport: SuiteTransport, n: number, env: Record<string, string>, errors: string[]): Promise<LaunchResult> {
  const onStderr = (rank: number, line: string): void => void (line && errors.push(`[rank ${rank}] ${line}`));
  const args = childArgs(RANK_FILE);
  if (transport === 'shm') return launch({ nproc: n, command: process.execPath, args, stdout: 'ignore', env, onStderr });
  // MPI reduces floats in an order of its own: the rank file then checks sums within their error bound
  return launchMpi({ implementation: transport, nproc: n, command: process.execPath, args, stdout: 'ignore', env: { ...env, COLLECTIVE_ORDER: 'any' }, onStderr });
}

/**
 * One test per world size 1-4 on this transport; on shared memory each private buffer is read with
 * cross-memory attach, and `slots` runs the suite again with it off (KESTREL_DIST_CMA=0: the copying path).
 */
export function collectiveTests(transport: SuiteTransport, slots = false): void {
  const skip = transport === 'shm' ? false : mpiMissing(transport);
  const cma = transport === 'shm' && !slots;
  for (const n of [1, 2, 3, 4]) {
    test(`collectives match the single-process reference on ${n} rank${n > 1 ? 's' : ''} (${transport}${slots ? ', through the slots' : ''})`, { skip }, async () => {
      const before = kestrelSegments();
      const errors: string[] = [];
      // 1M+3 float32 on the 4-rank run: 64 pieces and a ragged last one
      const env = { KESTREL_DIST_SLOT_BYTES: '65536', COLLECTIVE_HUGE: n === 4 ? String((1 << 20) + 3) : '0', COLLECTIVE_SHARED: transport === 'shm' ? '1' : '0', COLLECTIVE_CMA: cma ? '1' : '0' };
      const r = await runSuite(transport, n, slots ? { ...env, KESTREL_DIST_CMA: '0' } : env, errors);
      assert.equal(r.exitCode, 0, `${r.failure ? `rank ${r.failure.rank}: ${r.failure.message}` : ''}\n${errors.join('\n')}`);
      assert.deepEqual(segmentsLeft(before), [], 'segments left in /dev/shm');
    });
  }
}
