// Data-parallel training on the MPI transport, through the real CLI: `kestrel launch --hostfile`
// (localhost slots=2, under Open MPI and under MPICH) and a bare `mpirun -np 2 kestrel train`.
// 2 ranks × 1 micro-batch see the same global batch as 1 rank × grad-accum 2, and each rank's
// loss is normalised by the global batch's tokens: the summed gradient is g0 + g1, one float32
// addition whatever order MPI reduces in, so the final weights equal the 1-rank run's bit for bit
// and the losses agree to float64 rounding. Rank 0 alone writes metrics.jsonl (3 lines for 3 steps).
// Across machines cannot be tested on this one machine; the hostfile's hosts go to mpirun as they are.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { kestrelCommand } from '../../src/cli/self.js';
import { runCli, tinyTrainDir } from '../helpers.js';
import { mpiMissing } from './collective_suite.js';
import './train_runs.js'; // KESTREL_NUM_THREADS=1: the same kernels' partition on every process

const TRAIN = ['--max-steps', '3', '--batch-size', '2', '--seq-len', '10', '--eval-fraction', '0', '--clip', '1.2', '--quiet', '--dtype', 'fp32'];

function trainArgs(dir: string, out: string, extra: string[] = []): string[] {
  return ['train', '--model', join(dir, 'config.json'), '--data', join(dir, 'train.jsonl'), '--output', join(dir, out), ...TRAIN, ...extra];
}

function result(dir: string, out: string): { losses: number[]; weights: Buffer } {
  const lines = readFileSync(join(dir, out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { loss: number; step: number });
  assert.deepEqual(lines.map((l) => l.step), [1, 2, 3], `${out}: rank 0 alone writes one metrics line per step`);
  return { losses: lines.map((l) => l.loss), weights: readFileSync(join(dir, out, 'model.safetensors')) };
}

function sameAsOneRank(dir: string, out: string): void {
  const one = result(dir, 'one');
  const many = result(dir, out);
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(many.losses[i] - one.losses[i]) <= 1e-12 * one.losses[i], `${out} step ${i + 1}: loss ${many.losses[i]} vs ${one.losses[i]}`);
  assert.ok(many.weights.equals(one.weights), `${out}: final weights differ from the 1-rank run's`);
}

const dir = tinyTrainDir('kestrel-train-mpi-');
writeFileSync(join(dir, 'hosts.txt'), '# this machine only\nlocalhost slots=2\n');
const skipOmpi = mpiMissing('openmpi');
const skipMpich = mpiMissing('mpich');
let oneDone = false;
const oneRank = (): void => {
  if (oneDone) return;
  const r = runCli(trainArgs(dir, 'one', ['--grad-accum', '2']));
  assert.equal(r.status, 0, r.stderr);
  oneDone = true;
};

for (const [impl, skip] of [['openmpi', skipOmpi], ['mpich', skipMpich]] as const) {
  test(`kestrel launch --hostfile (localhost slots=2, ${impl}) trains like 1 rank × grad-accum 2`, { skip }, () => {
    oneRank();
    const r = runCli(['launch', '--hostfile', join(dir, 'hosts.txt'), '--mpi', impl, '--', 'kestrel', ...trainArgs(dir, `launch-${impl}`)]);
    assert.equal(r.status, 0, r.stderr);
    sameAsOneRank(dir, `launch-${impl}`);
  });
}

test('mpirun -np 2 kestrel train works directly (Open MPI)', { skip: skipOmpi }, () => {
  oneRank();
  const root = process.getuid?.() === 0 ? ['--allow-run-as-root'] : [];
  const rank = kestrelCommand(trainArgs(dir, 'mpirun'));
  const r = spawnSync('mpirun.openmpi', [...root, '--oversubscribe', '-np', '2', rank.command, ...rank.args], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  sameAsOneRank(dir, 'mpirun');
});

test('a failing rank under kestrel launch --hostfile reaches the launcher with its rank and message', { skip: skipOmpi }, () => {
  // --lr fast is refused by every rank's flag check; the launcher shows the first failing rank's message
  const r = runCli(['launch', '--hostfile', join(dir, 'hosts.txt'), '--mpi', 'openmpi', '--', 'kestrel', ...trainArgs(dir, 'bad', ['--lr', 'fast'])]);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /kestrel launch: rank [01] exited with code 1: .*--lr/);
});
