// Large host<->device copies go through the staging pipeline (native/cuda/staging.h: two pinned
// buffers on a GPU, host buffers on the emulator, the same chunking). With 4 KiB chunks
// (KESTREL_CUDA_STAGING_BYTES is read when the device opens: a child process), copies of sizes
// around one chunk and its multiples, and reads at odd offsets, round-trip bit for bit, and each is
// counted as staged (cudaMemStats' stagedCopies) exactly where the pipeline should take it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { skipUnless } from '../devices.js';
import * as k from '../../src/index.js';
import { runChild, seeded } from '../helpers.js';

const CHILD = process.env.KESTREL_STAGING_CHILD === '1';
const CHUNK = 4096;
const skip = skipUnless('cuda');

const bytes = (n: number, seed: number): Uint8Array => Uint8Array.from(seeded(n, seed, 0, 256), Math.floor);
const stagedCopies = (): number => k.cuda.memoryStats().stagedCopies;

/** Uploads `host`, downloads it again: the bytes and the number of copies the staging pipeline took. */
function roundTrip(host: Uint8Array): { back: Uint8Array; staged: number } {
  const before = stagedCopies();
  const t = k.tensor(host, { dtype: 'uint8', backend: 'cpu' }).to('cuda');
  const back = t.toTypedArray() as Uint8Array;
  t.dispose();
  return { back, staged: stagedCopies() - before };
}

/** Two uploads of different bytes in a row, then both read back: on a GPU the second fills the other buffer while the first one's DMA may still run. */
function twoUploads(n: number): void {
  const [a, b] = [bytes(n, 11), bytes(n, 12)];
  const da = k.tensor(a, { dtype: 'uint8', backend: 'cuda' });
  const db = k.tensor(b, { dtype: 'uint8', backend: 'cuda' });
  assert.deepEqual(da.toTypedArray(), a, `the first of two ${n}-byte uploads`);
  assert.deepEqual(db.toTypedArray(), b, `the second of two ${n}-byte uploads`);
  da.dispose();
  db.dispose();
}

if (CHILD)
  test('4 KiB chunks: sizes around the chunk round-trip, staged from one chunk up', { skip }, () => {
    for (const n of [1, 4095, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 7, 5 * CHUNK, 33 * 257]) {
      const host = bytes(n, n);
      const { back, staged } = roundTrip(host);
      assert.deepEqual(back, host, `${n} bytes`);
      // a copy of at least one chunk is staged (the upload and the download), a smaller one goes direct
      assert.equal(staged, n >= CHUNK ? 2 : 0, `${n} bytes: staged copies`);
    }
    for (const n of [CHUNK, 3 * CHUNK + 5]) twoUploads(n);
    // a download from an offset into a block: a float32 view in the middle of a device tensor
    const values = Float32Array.from(seeded(5000, 3, -2, 2));
    const d = k.tensor(values, { backend: 'cpu' }).to('cuda');
    for (const [start, len] of [[1, 4000], [1023, 1025], [7, 3]] as const) {
      const view = k.narrow(d, 0, start, len);
      assert.deepEqual(view.toTypedArray(), values.subarray(start, start + len), `elements [${start}, +${len})`);
    }
    d.dispose();
  });
else
  test('staged copies on the default chunk (4 MiB, from 256 KiB up), and with 4 KiB chunks in a child process', { skip }, () => {
    const small = roundTrip(bytes(100_000, 1));
    assert.equal(small.staged, 0, 'under 256 KiB: direct');
    // one short chunk (256 KiB <= n < 4 MiB: most weight uploads)
    const one = bytes(300_007, 3);
    const short = roundTrip(one);
    assert.equal(short.staged, 2, '300 KB: staged');
    assert.ok(short.back.every((b, i) => b === one[i]), 'the 300 KB round trip differs');
    twoUploads(1 << 20);
    const host = bytes((1 << 20) * 9 + 13, 2); // two full 4 MiB chunks and a ragged third
    const big = roundTrip(host);
    assert.equal(big.staged, 2);
    assert.ok(big.back.every((b, i) => b === host[i]), 'the 9 MiB round trip differs');
    runChild(fileURLToPath(import.meta.url), { KESTREL_STAGING_CHILD: '1', KESTREL_CUDA_STAGING_BYTES: String(CHUNK) });
  });
