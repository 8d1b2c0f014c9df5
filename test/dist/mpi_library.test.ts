// Which MPI a job runs on (launcher variables, else PATH's mpirun), the library built with its
// mpicxx and cached (a second call compiles nothing), and a machine without MPI: no
// implementation found, and the addon loads all the same (it links no MPI; it dlopen's it).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { test } from 'node:test';
import { packageRoot } from '../../src/backend/addon.js';
import { rankFromEnv } from '../../src/dist/env.js';
import { distBackend } from '../../src/dist/init.js';
import { detectMpi, implementationOf, mpiLibrary } from '../../src/dist/mpi_library.js';
import { withEnv } from '../helpers.js';
import { mpiMissing } from './collective_suite.js';

test("an implementation from its tools' own words", () => {
  assert.equal(implementationOf('mpirun (Open MPI) 4.1.4\n\nReport bugs to http://www.open-mpi.org/community/help/'), 'openmpi');
  assert.equal(implementationOf('HYDRA build details:\n    Version:                                 4.0.2'), 'mpich');
  assert.equal(implementationOf('g++ -I/usr/include/x86_64-linux-gnu/mpich -L/usr/lib/x86_64-linux-gnu -lmpichcxx -lmpich'), 'mpich');
  assert.equal(implementationOf('g++ -I/usr/lib/x86_64-linux-gnu/openmpi/include -lmpi'), 'openmpi');
  assert.equal(implementationOf('gcc (Debian 12.2.0-14) 12.2.0'), null);
});

test('the launcher variables say which MPI started the job; KESTREL_MPI overrides; without MPI on PATH: none', () => {
  assert.equal(detectMpi({ OMPI_COMM_WORLD_SIZE: '2' }), 'openmpi');
  assert.equal(detectMpi({ PMI_RANK: '0' }), 'mpich');
  assert.equal(detectMpi({ KESTREL_MPI: 'mpich', OMPI_COMM_WORLD_SIZE: '2' }), 'mpich');
  assert.throws(() => detectMpi({ KESTREL_MPI: 'lam' }), /KESTREL_MPI='lam' must be one of openmpi, mpich/);
  withEnv('PATH', '/nonexistent', () => assert.equal(detectMpi({}), null));
});

test('the transport: MPI under mpirun or srun, shared memory under kestrel launch / torchrun; KESTREL_DIST_BACKEND decides when set', () => {
  const ompi = { OMPI_COMM_WORLD_RANK: '0', OMPI_COMM_WORLD_SIZE: '2' };
  assert.equal(distBackend(rankFromEnv(ompi), {}), 'mpi');
  assert.equal(distBackend(rankFromEnv({ PMI_RANK: '1', PMI_SIZE: '2' }), {}), 'mpi');
  assert.equal(distBackend(rankFromEnv({ SLURM_PROCID: '0', SLURM_NTASKS: '4' }), {}), 'mpi');
  assert.equal(distBackend(rankFromEnv({ RANK: '0', WORLD_SIZE: '2' }), {}), 'shm');
  assert.equal(distBackend(rankFromEnv(ompi), { KESTREL_DIST_BACKEND: 'shm' }), 'shm');
  assert.throws(() => distBackend(rankFromEnv({}), { KESTREL_DIST_BACKEND: 'nccl' }), /KESTREL_DIST_BACKEND='nccl' must be one of shm, mpi/);
});

test('the addon links no MPI: it loads where none is installed', () => {
  const deps = execFileSync('ldd', [`${packageRoot()}/build/Release/kestrel.node`], { encoding: 'utf8' });
  assert.doesNotMatch(deps, /mpi/i);
});

for (const impl of ['openmpi', 'mpich'] as const) {
  test(`kestrel_mpi.so for ${impl}: built once per source and implementation, then taken from the cache`, { skip: mpiMissing(impl) }, () => {
    const a = mpiLibrary(impl);
    const t = statSync(a).mtimeMs;
    const b = mpiLibrary(impl);
    assert.equal(b, a);
    assert.equal(statSync(b).mtimeMs, t, 'the cached library was rebuilt');
    assert.match(a, new RegExp(`kestrel_mpi-${impl}-[0-9a-f]{16}\\.so$`));
    const deps = execFileSync('ldd', [a], { encoding: 'utf8' });
    assert.match(deps, impl === 'openmpi' ? /libmpi\.so/ : /libmpich\.so/);
  });
}
