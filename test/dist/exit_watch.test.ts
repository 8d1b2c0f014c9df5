// The exit watch (native/exit_watch.h) that names the first rank to die under mpirun: processes
// that are not children of the watching thread's process's JS (spawned here, but watched by pid
// only, as the launcher watches mpirun's ranks) are reported in the order they exit, each on its
// own wake-up when the exits are apart, with CLOCK_MONOTONIC times comparable to process.hrtime;
// a pid that is already gone counts as exited when added.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadNative } from '../../src/backend/addon.js';
import { skipUnless } from '../devices.js';

test('exits are reported in the order they happen, with their times', { skip: skipUnless('cpu') }, async () => {
  const addon = loadNative()!;
  const kids = [0, 1, 2].map(() => spawn('sleep', ['30'], { stdio: 'ignore' }));
  const watch = addon.exitWatchStart();
  try {
    for (const c of kids) addon.exitWatchAdd(watch, c.pid!);
    await sleep(20);
    assert.deepEqual(addon.exitWatchExits(watch), [], 'nothing exited yet');
    const t0 = Number(process.hrtime.bigint());
    kids[2].kill('SIGKILL');
    await sleep(50);
    kids[0].kill('SIGKILL');
    await sleep(50);
    const exits = addon.exitWatchExits(watch);
    assert.deepEqual(exits.map((e) => e.pids), [[kids[2].pid], [kids[0].pid]], 'rank 2 first, then rank 0, each alone');
    assert.ok(exits[0].ns >= t0 && exits[0].ns < exits[1].ns && exits[1].ns <= Number(process.hrtime.bigint()), 'monotonic times as process.hrtime');
    // a pid that is already gone (rank 0's, reaped by now) is an exit at once
    await new Promise((r) => (kids[0].exitCode !== null || kids[0].signalCode !== null ? r(null) : kids[0].once('exit', r)));
    addon.exitWatchAdd(watch, kids[0].pid!);
    assert.deepEqual(addon.exitWatchExits(watch).at(-1)!.pids, [kids[0].pid]);
  } finally {
    addon.exitWatchStop(watch);
    for (const c of kids) c.kill('SIGKILL');
  }
  assert.throws(() => addon.exitWatchExits(watch), /exit watch \d+ is not open/);
});
