// The CPU thread pool (native/runtime.cc parallel_for) under back-to-back calls: a program of
// 600,000 `parallel_count` kernel calls (out[i] += 1 over parallel_for, grain 1) replayed through
// runProgram, as a decode step's hundreds of small kernels run, on 2 threads. Correct: every element counted exactly once per call
// (a chunk run twice or skipped changes the count) and the run ends. Before the fix in
// ThreadPool::run (pending_ stored after the chunks were open, claims without their job's
// number), a worker left inside the last job could finish a chunk that pending_ never counted,
// and the caller waited forever: this test hung in 3 of 8 runs on a 2-vCPU VM (0 of 12 after). The calls run
// in a child process so that a hang fails the test at its time limit instead of stalling the suite.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { loadNative, nativeLoadError } from '../../src/backend/addon.js';
import { DTYPE_CODE } from '../../src/backend/cpu/native.js';
import { runChild } from '../helpers.js';

const CHILD = process.env.KESTREL_POOL_CHILD === '1';
const ELEMENTS = 64;
const CALLS_PER_PROGRAM = 2000;
const PROGRAMS = 300;

/** The child: the program on 2 threads (the hand-offs race when the threads are as many as the cores), then `ok`. */
function child(): void {
  const addon = loadNative();
  if (!addon) throw new Error(nativeLoadError());
  const id = addon.kernels.indexOf('parallel_count');
  assert.ok(id >= 0, 'the addon has no parallel_count kernel (rebuild with npm run build)');
  addon.setThreads(2);
  const handle = addon.alloc(ELEMENTS * 4, true);
  // one call: id, argument count, then the view (handle, dtype, offset, ndim, shape, stride) and the grain
  const args = [handle, DTYPE_CODE.float32, 0, 1, ELEMENTS, 1, 1];
  const program = new Float64Array(CALLS_PER_PROGRAM * (2 + args.length));
  for (let c = 0; c < CALLS_PER_PROGRAM; c++) program.set([id, args.length, ...args], c * (2 + args.length));
  for (let p = 0; p < PROGRAMS; p++) addon.runProgram(program, new Int32Array(0), new Float64Array(0), 0);
  const out = new Float32Array(ELEMENTS);
  addon.read(handle, 0, out);
  addon.free(handle);
  const want = CALLS_PER_PROGRAM * PROGRAMS;
  const wrong = [...out.keys()].filter((i) => out[i] !== want);
  assert.deepEqual(wrong, [], `elements ${wrong.slice(0, 8).join(', ')} counted ${wrong.slice(0, 8).map((i) => out[i]).join(', ')} times, not ${want}`);
  console.log('ok');
}

if (CHILD) child();
else
  test('600,000 back-to-back parallel_for calls count every element once and finish', { skip: loadNative() ? false : nativeLoadError() }, () => {
    // a few seconds when correct; a lost hand-off never finishes
    const out = runChild(fileURLToPath(import.meta.url), { KESTREL_POOL_CHILD: '1' }, 90_000);
    assert.match(out, /^ok$/m);
  });
