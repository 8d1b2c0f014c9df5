// ZeRO stage 3 over the MPI transport (Open MPI and MPICH, through `kestrel launch --hostfile`):
// the layers' gathers and reduce-scatters are started and waited for inside the synchronous
// forward and backward (startNow/waitNow on MPI's worker), so 2 ranks × grad-accum 2 must give
// 1 rank × grad-accum 4's losses, norms and final weights within float32 reduction-order tolerance,
// as on shared memory (zero3.test.ts), and write the same sharded HF folder.
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { assertClose, tinyTrainDir } from '../helpers.js';
import { mpiMissing } from './collective_suite.js';
import { deeperModel, sameWeights, train } from './train_runs.js';

const dir = tinyTrainDir('kestrel-zero3-mpi-');
deeperModel(dir, 3);
writeFileSync(join(dir, 'hosts.txt'), 'localhost slots=2\n');
let one: ReturnType<typeof train> | null = null;

for (const impl of ['openmpi', 'mpich'] as const) {
  test(`ZeRO-3 under MPI (${impl}): 2 ranks × grad-accum 2 equal 1 rank × grad-accum 4`, { skip: mpiMissing(impl) }, async () => {
    one ??= train(dir, 'one', ['--grad-accum', '4']);
    const out = `zero3-${impl}`;
    const many = train(dir, out, ['--grad-accum', '2', '--zero-stage', '3'], ['launch', '--hostfile', join(dir, 'hosts.txt'), '--mpi', impl, '--', 'kestrel']);
    assertClose(many.losses, one.losses, { atol: 0, rtol: 2e-6, what: 'losses' });
    assertClose(many.norms, one.norms, { atol: 1e-7, rtol: 1e-5, what: 'gradient norms' });
    assert.ok(existsSync(join(dir, out, 'model.safetensors.index.json')), 'a sharded HF folder');
    await sameWeights(join(dir, out), join(dir, 'one', 'model.safetensors'));
  });
}
