// DeepSpeed's hostfile (`host slots=N`, comments, blank lines) and its translation into Open MPI's
// and MPICH's mpirun flags; mpirun's output as the launcher reads it back (tags, the rank it
// blames), on lines copied from Open MPI 4.1.4's and MPICH 4.0.2's real output.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseHostfile } from '../../src/dist/hostfile.js';
import { blamedRank, mpirunArgv, untag } from '../../src/dist/mpirun.js';

test('a hostfile: hosts and slots in order; comments and blank lines skipped', () => {
  const text = '# the cluster\nworker-1 slots=4\n\n  10.0.0.2   slots = 2   # the small one\nworker-3 slots=1\n';
  assert.deepEqual(parseHostfile(text, 'hosts'), [{ name: 'worker-1', slots: 4 }, { name: '10.0.0.2', slots: 2 }, { name: 'worker-3', slots: 1 }]);
});

test('a bad hostfile line is an error naming file:line', () => {
  assert.throws(() => parseHostfile('a slots=2\nb\n', 'h.txt'), /^Error: h\.txt:2: expected 'hostname slots=N', got 'b'$/);
  assert.throws(() => parseHostfile('a slots=0\n', 'h.txt'), /h\.txt:1: slots must be a positive integer, got '0'/);
  assert.throws(() => parseHostfile('a slots=1.5\n', 'h.txt'), /h\.txt:1: slots must be a positive integer, got '1\.5'/);
  assert.throws(() => parseHostfile('a slots=2\n# x\na slots=1\n', 'h.txt'), /h\.txt:3: host 'a' is listed again \(first at line 1\)/);
  assert.throws(() => parseHostfile('a;rm slots=2\n', 'h.txt'), /h\.txt:1: 'a;rm' is not a host name or address/);
  assert.throws(() => parseHostfile('# nothing\n\n', 'h.txt'), /h\.txt: no hosts/);
});

const hosts = [{ name: 'a', slots: 2 }, { name: 'b', slots: 1 }];
const job = { nproc: 3, hosts, command: 'node', args: ['x.js'], env: { KESTREL_X: '1' } };

test('hosts become -H host:slots for Open MPI and -hosts host:slots for MPICH, with the variables for every machine', () => {
  const o = mpirunArgv({ implementation: 'openmpi', ...job }, 'mpirun.openmpi');
  const root = process.getuid?.() === 0 ? ['--allow-run-as-root'] : [];
  assert.deepEqual(o, { command: 'mpirun.openmpi', args: [...root, '-np', '3', '-H', 'a:2,b:1', '--tag-output', '-x', 'KESTREL_X=1', 'node', 'x.js'] });
  const m = mpirunArgv({ implementation: 'mpich', ...job }, 'mpirun.mpich');
  assert.deepEqual(m, { command: 'mpirun.mpich', args: ['-np', '3', '-hosts', 'a:2,b:1', '-prepend-rank', '-genv', 'KESTREL_X', '1', 'node', 'x.js'] });
  // one machine, no hostfile: Open MPI may run more ranks than cores
  assert.ok(mpirunArgv({ implementation: 'openmpi', ...job, hosts: undefined }, 'mpirun').args.includes('--oversubscribe'));
  assert.throws(() => mpirunArgv({ implementation: 'mpich', ...job, nproc: 4 }, 'mpirun'), /-n 4 ranks, but the hostfile has 3 slots/);
});

test("mpirun's tagged lines give the rank; its own lines name the failed rank", () => {
  assert.deepEqual(untag('[1,3]<stderr>:boom: x'), { rank: 3, text: 'boom: x' });
  assert.deepEqual(untag('[2] out 2'), { rank: 2, text: 'out 2' });
  assert.equal(untag('--------------------------------------------------------------------------'), null);
  const ompiAbort = ['MPI_ABORT was invoked on rank 2 in communicator MPI_COMM_WORLD', 'with errorcode 1.'];
  assert.deepEqual(blamedRank(ompiAbort), { rank: 2, signal: null, code: 1 });
  const ompiExit = ['mpirun.openmpi detected that one or more processes exited with non-zero status, thus causing', 'the job to be terminated. The first process to do so was:', '', '  Process name: [[30605,1],1]', '  Exit code:    3'];
  assert.deepEqual(blamedRank(ompiExit), { rank: 1, signal: null, code: 3 });
  const ompiSignal = ['mpirun.openmpi noticed that process rank 2 with PID 0 on node vm exited on signal 9 (Killed).'];
  assert.deepEqual(blamedRank(ompiSignal), { rank: 2, signal: 'SIGKILL', code: null });
  assert.deepEqual(blamedRank([...ompiAbort, ...ompiSignal]), { rank: 2, signal: 'SIGKILL', code: null }, 'the killed rank, not the survivor that aborted after it');
  const mpich = ['=   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES', '=   PID 15192 RUNNING AT vm', '=   EXIT CODE: 9', '=   CLEANING UP REMAINING PROCESSES'];
  assert.deepEqual(blamedRank(mpich, new Map([['15192@vm', 1]])), { rank: 1, signal: 'SIGKILL', code: null });
  assert.equal(blamedRank(mpich), null, 'MPICH names a pid only: without the ranks\' pids no rank is blamed');
  // with a hostfile MPICH names the host as the file does ("localhost"), the rank its machine's name: one rank has that pid
  const viaHostfile = mpich.map((l) => l.replace('RUNNING AT vm', 'RUNNING AT localhost'));
  assert.deepEqual(blamedRank(viaHostfile, new Map([['15192@vm', 1], ['15193@vm', 0]])), { rank: 1, signal: 'SIGKILL', code: null });
  assert.equal(blamedRank(viaHostfile, new Map([['15192@vm', 1], ['15192@other', 0]])), null, 'a pid on two machines names no rank');
});
