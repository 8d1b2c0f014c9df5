// `kestrel launch --elastic` through mpirun (Open MPI and MPICH), with a hostfile of this machine:
// 3 ranks × grad-accum 2 train with a checkpoint every 2 steps. Rank 1 is killed with SIGKILL: the
// hostfile is unchanged, so its slot counts as lost and the job goes on on 2 ranks × grad-accum 3.
// Then the hostfile gains slots (a machine came back) and another rank is killed: the file changed,
// so the job goes on on min(-n, slots) = 3 ranks × grad-accum 2. Every start sees the same 6
// micro-batches per step in the same order, so metrics.jsonl must hold every step exactly once and
// the final loss must equal an uninterrupted 1-rank × grad-accum 6 run's within float32
// reduction-order tolerance (rtol 1e-5, as the shared-memory elastic test).
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { runCli, startCli, tinyTrainDir, waitFor } from '../helpers.js';
import { mpiMissing } from './collective_suite.js';
import './train_runs.js'; // KESTREL_NUM_THREADS=1 for every rank

const STEPS = 14;

const trainArgs = (dir: string, out: string, accum: number): string[] => ['train', '--model', join(dir, 'config.json'), '--data', join(dir, 'train.jsonl'),
  '--output', join(dir, out), '--max-steps', String(STEPS), '--batch-size', '2', '--seq-len', '10', '--eval-fraction', '0', '--dtype', 'fp32',
  '--grad-accum', String(accum), '--save-every', '2', '--quiet'];

function steps(file: string): { step: number; loss: number }[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { step: number; loss: number });
}

/** The running rank processes of the job whose output folder is `out`: rank -> { pid, world size }. */
function ranksOf(out: string): Map<number, { pid: number; world: number }> {
  const found = new Map<number, { pid: number; world: number }>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (!readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').includes(out)) continue;
      const env = new Map(readFileSync(`/proc/${name}/environ`, 'utf8').split('\0').map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
      const rank = env.get('OMPI_COMM_WORLD_RANK') ?? env.get('PMI_RANK');
      const world = env.get('OMPI_COMM_WORLD_SIZE') ?? env.get('PMI_SIZE');
      if (rank !== undefined && world !== undefined && readFileSync(`/proc/${name}/stat`, 'utf8').split(') ')[1]?.[0] !== 'Z') found.set(Number(rank), { pid: Number(name), world: Number(world) });
    } catch {
      // gone already, or not ours to read
    }
  }
  return found;
}

const dir = tinyTrainDir('kestrel-elastic-mpi-');
let reference: { step: number; loss: number }[] | null = null;
function uninterrupted(): { step: number; loss: number }[] {
  if (reference) return reference;
  const r = runCli(trainArgs(dir, 'reference', 6));
  assert.equal(r.status, 0, r.stderr);
  return (reference = steps(join(dir, 'reference', 'metrics.jsonl')));
}

for (const impl of ['openmpi', 'mpich'] as const) {
  test(`elastic under mpirun (${impl}): a killed rank's slot is lost, a hostfile that gains slots brings the ranks back`, { skip: mpiMissing(impl) }, async () => {
    const ref = uninterrupted();
    const out = join(dir, `elastic-${impl}`);
    const metrics = join(out, 'metrics.jsonl');
    const hostfile = join(dir, `hosts-${impl}`);
    writeFileSync(hostfile, 'localhost slots=3\n');
    const cli = startCli(['launch', '--elastic', '--min-ranks', '2', '--hostfile', hostfile, '--mpi', impl, '-n', '3', '--', 'kestrel', ...trainArgs(dir, `elastic-${impl}`, 2)], 400_000);
    try {
      await waitFor(() => steps(metrics).length >= 3 && ranksOf(out).size === 3, 'step 3 on 3 ranks', 150_000);
      process.kill(ranksOf(out).get(1)!.pid, 'SIGKILL');
      await waitFor(() => [...ranksOf(out).values()].some((r) => r.world === 2), 'the restart on 2 ranks', 150_000);
      const resumedAt = steps(metrics).length;
      writeFileSync(hostfile, 'localhost slots=4  # a machine came back\n');
      await waitFor(() => steps(metrics).length >= resumedAt + 2 && ranksOf(out).size === 2, 'two steps on 2 ranks', 150_000);
      process.kill(ranksOf(out).get(0)!.pid, 'SIGKILL');
    } catch (e) {
      cli.child.kill('SIGTERM');
      throw e;
    }
    const r = await cli.exited;
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /rank 1 (was killed by SIGKILL|died without a word)/);
    assert.match(r.stderr, /restarting on 2 ranks with --grad-accum 3 \(global batch unchanged\) from .*checkpoint-\d+/);
    assert.match(r.stderr, /restarting on 3 ranks \(the hostfile changed: 4 slots\) with --grad-accum 2 \(global batch unchanged\)/);
    const got = steps(metrics);
    assert.deepEqual(got.map((s) => s.step), Array.from({ length: STEPS }, (_, i) => i + 1), `every step exactly once in metrics.jsonl\n${r.stderr}`);
    const [a, b] = [got.at(-1)!.loss, ref.at(-1)!.loss];
    assert.ok(Math.abs(a - b) <= 1e-5 * Math.abs(b), `final loss ${a} vs the uninterrupted run's ${b}`);
  });
}
