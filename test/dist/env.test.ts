// Rank discovery from each launcher's variables (values as torchrun, mpirun, hydra and srun set
// them), precedence, defaults and the errors that name the variable.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rankFromEnv } from '../../src/dist/env.js';
import { segmentName } from '../../src/dist/init.js';

test('torchrun / DeepSpeed variables', () => {
  const e = rankFromEnv({ RANK: '3', WORLD_SIZE: '4', LOCAL_RANK: '1', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: '10.0.0.1', MASTER_PORT: '29600' });
  assert.deepEqual(e, { rank: 3, worldSize: 4, localRank: 1, localWorldSize: 2, masterAddr: '10.0.0.1', masterPort: 29600, source: 'torchrun' });
});

test('Open MPI, MPICH and Slurm variables', () => {
  const ompi = rankFromEnv({ OMPI_COMM_WORLD_RANK: '1', OMPI_COMM_WORLD_SIZE: '2', OMPI_COMM_WORLD_LOCAL_RANK: '1', OMPI_COMM_WORLD_LOCAL_SIZE: '2' });
  assert.deepEqual([ompi.rank, ompi.worldSize, ompi.localRank, ompi.localWorldSize, ompi.source], [1, 2, 1, 2, 'openmpi']);
  const mpich = rankFromEnv({ PMI_RANK: '2', PMI_SIZE: '3', MPI_LOCALRANKID: '0', MPI_LOCALNRANKS: '1' });
  assert.deepEqual([mpich.rank, mpich.worldSize, mpich.localRank, mpich.localWorldSize, mpich.source], [2, 3, 0, 1, 'mpich']);
  const slurm = rankFromEnv({ SLURM_PROCID: '5', SLURM_NTASKS: '8', SLURM_LOCALID: '1', SLURM_NTASKS_PER_NODE: '4(x2)' });
  assert.deepEqual([slurm.rank, slurm.worldSize, slurm.localRank, slurm.localWorldSize, slurm.source], [5, 8, 1, 4, 'slurm']);
});

test('torchrun variables win over a scheduler\'s; no variables is one rank with torchrun\'s default port', () => {
  assert.equal(rankFromEnv({ RANK: '0', WORLD_SIZE: '2', SLURM_PROCID: '1', SLURM_NTASKS: '2' }).source, 'torchrun');
  assert.deepEqual(rankFromEnv({}), { rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, masterAddr: '127.0.0.1', masterPort: 29500, source: 'single' });
  // without LOCAL_* every rank is taken to be on this machine
  assert.deepEqual([rankFromEnv({ RANK: '1', WORLD_SIZE: '2' }).localRank, rankFromEnv({ RANK: '1', WORLD_SIZE: '2' }).localWorldSize], [1, 2]);
});

test('bad values name the variable', () => {
  assert.throws(() => rankFromEnv({ RANK: 'x', WORLD_SIZE: '2' }), /RANK='x' is not an integer/);
  assert.throws(() => rankFromEnv({ RANK: '2', WORLD_SIZE: '2' }), /RANK=2 is not below WORLD_SIZE=2/);
  assert.throws(() => rankFromEnv({ WORLD_SIZE: '2' }), /WORLD_SIZE is set but RANK is not/);
  assert.throws(() => rankFromEnv({ MASTER_PORT: '70000' }), /MASTER_PORT=70000 is not a TCP port/);
  assert.throws(() => rankFromEnv({ PMI_RANK: '0', PMI_SIZE: '0' }), /PMI_SIZE='0' is not an integer >= 1/);
});

test("a segment name is the launcher's prefix and the port, then a random part: never a segment an earlier job left", () => {
  // every member opens the segment with O_CREAT and keeps what it holds: a dead job's segment of the
  // same name (same launcher pid and port) would hand its stale counters to the new job
  const me = rankFromEnv({ RANK: '0', WORLD_SIZE: '2', MASTER_PORT: '29600' });
  const env = { KESTREL_DIST_SHM_PREFIX: '/kestrel-123-29600' };
  const [a, b] = [segmentName(me, env), segmentName(me, env)];
  assert.match(a, /^\/kestrel-123-29600-29600-[0-9a-f]{12}$/);
  assert.notEqual(a, b);
  assert.match(segmentName(me, {}), new RegExp(`^/kestrel-${process.pid}-29600-[0-9a-f]{12}$`));
});
