// One-process checks of the ProcessGroup's argument errors and of the native side's own bounds
// checks (a size or offset past a storage block is an error, never a stray write).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { loadNative } from '../../src/backend/addon.js';
import { cpuStorageHandle } from '../../src/backend/cpu/backend.js';
import { initProcessGroup } from '../../src/dist/init.js';
import { kestrelSegments, segmentsLeft } from './ranks.js';

test('shape, dtype and layout mismatches are errors that name the call', async () => {
  const before = kestrelSegments();
  const pg = await initProcessGroup({ env: {}, timeoutMs: 2000 });
  assert.deepEqual([pg.rank, pg.size, [...pg.ranks]], [0, 1, [0]]);
  assert.deepEqual(segmentsLeft(before), [], 'the segment name is gone once mapped');
  const x = k.ones([4, 3], { backend: 'cpu' });
  assert.throws(() => pg.allGather(k.zeros([5], { backend: 'cpu' }), x), /dist allGather: output \[5\] must hold 12 elements for input \[4, 3\] in a group of 1/);
  assert.throws(() => pg.allGather(k.zeros([12], { backend: 'cpu', dtype: 'bfloat16' }), x), /output is bfloat16, input float32/);
  assert.throws(() => pg.allReduce(k.transpose(x, 0, 1)), /dist allReduce: the tensor \[3, 4\] is not contiguous/);
  assert.throws(() => pg.allReduce(k.ones([2], { backend: 'cpu', dtype: 'int32' }), 'avg'), /'avg' needs a floating dtype, got int32/);
  assert.throws(() => pg.broadcast(x, 3), /dist broadcast: rank 3 is not in this group \[0\]/);
  assert.throws(() => pg.allReduce(k.ones([2], { backend: 'cpu', dtype: 'int8' })), /dist allReduce: dtype int8 is not carried/);
  await assert.rejects(pg.newGroup([0, 0]).then(() => null), /ranks \[0, 0\] must be distinct members of \[0\]/);
  // a 1-rank group: every collective is the identity (or a copy)
  await pg.allReduce(x, 'max');
  assert.deepEqual([...x.toFloat32Array()], new Array(12).fill(1));
  pg.destroy();
});

test('the addon checks byte ranges against the storage block before touching memory', async () => {
  const addon = loadNative()!;
  const name = `/kestrel-test-${process.pid}-bounds`;
  const id = addon.distOpen(name, 0, [0], 4096);
  addon.distUnlink(name);
  const t = k.zeros([10], { backend: 'cpu' });
  const h = cpuStorageHandle(t.storage)!;
  // allReduce (op 0) of 11 float32 (dtype 0) in a 10-element block
  assert.throws(() => addon.distRun(id, 0, 0, 0, 0, 11, 1, h, 0, h, 0, 1000, 'test'), /source range \[0, \+44\) outside its storage of \d+ bytes/);
  assert.throws(() => addon.distRun(id, 0, 0, 0, 0, 1, 1, h, 1 << 20, h, 0, 1000, 'test'), /outside its storage/);
  assert.throws(() => addon.distRun(id, 9, 0, 0, 0, 1, 1, h, 0, h, 0, 1000, 'test'), /argument 1 must be an integer in \[0, 7/);
  assert.throws(() => addon.distRun(id, 0, 0, 0, 0, 1, 1, -1, 0, h, 0, 1000, 'test'), /needs a source buffer/);
  await assert.rejects(addon.distRun(id + 99, 0, 0, 0, 0, 1, 1, h, 0, h, 0, 1000, 'test'), /unknown or closed segment/);
  assert.throws(() => addon.distOpen('no-slash', 0, [0], 4096), /bad segment name/);
  assert.throws(() => addon.distOpen(name, 0, [0], 1000), /slot size 1000 must be a multiple of 4096/);
  addon.distClose(id);
  t.dispose();
});

test('a Work tells its transport when a caller begins and ends waiting for it, balanced, and never when nobody waits', async () => {
  const { Work } = await import('../../src/dist/process_group.js');
  const log: number[] = [];
  let settle!: () => void;
  const w = new Work(new Promise<void>((r) => (settle = r)), (d) => log.push(d));
  assert.deepEqual(log, [], 'starting a call is not waiting for it');
  const first = w.wait();
  const second = (async () => await w)();
  await new Promise((r) => setImmediate(r)); // await calls then() a microtask later
  assert.deepEqual(log, [1, 1], 'wait() and await each begin a wait');
  settle();
  await Promise.all([first, second]);
  assert.deepEqual(log, [1, 1, -1, -1], 'each wait ends once the call settles');
  await w;
  assert.deepEqual(log, [1, 1, -1, -1], 'awaiting a finished call waits for nothing');
  // a failed call ends its waits too (and its rejection reaches the caller)
  const failed: number[] = [];
  const f = new Work(Promise.reject(new Error('peer died')), (d) => failed.push(d));
  await assert.rejects(f.wait(), /peer died/);
  assert.deepEqual(failed, [1, -1]);
});
