// The CPU caching allocator (native/alloc.cc), through the addon: a freed block is reused by the
// next request of its size class without a new OS allocation (and a reused large block takes no
// page faults), cached bytes show in k.memory.stats and go back on emptyCache(), the cache limit
// evicts the oldest blocks first, zeroed requests are zero even on dirty reused blocks, and a
// random stress of many sizes never hands out overlapping live blocks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as k from '../../src/index.js';
import { loadNative, nativeLoadError } from '../../src/backend/addon.js';

const addon = loadNative();
const skip = addon ? false : `native addon not built: ${nativeLoadError()}`;
const MiB = 2 ** 20;
if (addon) k.getBackend('cpu'); // registers the allocator with k.memory and warms the pool

/** Runs f with the cache on, a given limit and poison setting; restores the process's settings. */
function withSettings(s: { limit?: number; enabled?: boolean; poison?: boolean }, f: () => void): void {
  const before = addon!.allocStats();
  addon!.allocEmptyCache();
  addon!.allocConfigure(s.limit ?? before.limit, s.enabled ?? true, s.poison ?? false);
  try {
    f();
  } finally {
    addon!.allocConfigure(before.limit, before.enabled, before.poison);
  }
}

test('a freed block is reused by the next request of its size class, with no OS allocation', { skip }, () => {
  withSettings({}, () => {
    // 5 MiB - 100 and 5 MiB round up to the same class (4 MiB + k * 1 MiB); 2048 and 2040 B, 100 and 70 B (128-byte class) too
    for (const [first, second] of [[5 * MiB, 5 * MiB - 100], [2048, 2040], [100, 70]]) {
      const h = addon!.alloc(first, false);
      addon!.free(h);
      const s0 = addon!.allocStats();
      assert.ok(s0.cached >= first, `cached ${s0.cached} after freeing ${first} bytes`);
      const h2 = addon!.alloc(second, false);
      const s1 = addon!.allocStats();
      assert.equal(s1.osAllocs, s0.osAllocs, `${second} bytes after freeing ${first}: no new OS block`);
      assert.equal(s1.cacheHits, s0.cacheHits + 1);
      assert.equal(s1.inUse + s1.cached, s0.inUse + s0.cached, 'the block moved from the cache to use');
      addon!.free(h2);
    }
    // a request of a larger class does not take the smaller cached block
    const small = addon!.alloc(MiB, false);
    addon!.free(small);
    const s0 = addon!.allocStats();
    const big = addon!.alloc(2 * MiB, false);
    assert.equal(addon!.allocStats().osAllocs, s0.osAllocs + 1);
    addon!.free(big);
  });
});

test('a reused 48 MiB block is not faulted in again (glibc would unmap and re-map it)', { skip }, () => {
  withSettings({}, () => {
    const bytes = 48 * MiB; // above glibc's 32 MiB mmap threshold: before the cache, every one was fresh pages
    const src = new Uint8Array(bytes).fill(7); // faulted in here, once
    const faults = (): number => process.resourceUsage().minorPageFault;
    const touch = (): number => {
      const h = addon!.alloc(bytes, false);
      const f0 = faults();
      addon!.write(h, 0, src);
      const f = faults() - f0;
      addon!.free(h);
      return f;
    };
    const first = touch();
    const second = touch();
    // 48 MiB / 4 KiB = 12288 pages on first touch; the reused block's are already mapped
    assert.ok(first >= 12288 * 0.9, `first touch faulted ${first} pages`);
    assert.ok(second < 500, `reused block faulted ${second} pages (expected ~0)`);
  });
});

test('k.memory.stats reports cached bytes outside the tags; emptyCache returns them to the OS', { skip }, () => {
  withSettings({}, () => {
    const before = k.memory.stats('cpu');
    assert.equal(before.cached, 0);
    const t = k.zeros([1024, 1024], { backend: 'cpu' }); // 4 MiB
    const held = k.memory.stats('cpu');
    assert.equal(held.current.total - before.current.total, 4 * MiB);
    assert.ok(held.reserved >= held.current.total, `reserved ${held.reserved} < in use ${held.current.total}`);
    t.dispose();
    const freed = k.memory.stats('cpu');
    assert.equal(freed.current.total, before.current.total, 'a cached block counts in no tag');
    assert.equal(freed.cached, 4 * MiB);
    assert.equal(freed.reserved, held.reserved, 'the block stays reserved while cached');
    const frees = addon!.allocStats().osFrees;
    k.memory.emptyCache();
    const emptied = k.memory.stats('cpu');
    assert.equal(emptied.cached, 0);
    assert.equal(emptied.reserved, held.reserved - 4 * MiB);
    assert.equal(addon!.allocStats().osFrees, frees + 1);
    assert.ok(emptied.pageFaults.minor > 0 && emptied.osAllocs > 0);
  });
});

test('the cache limit releases the oldest cached blocks first', { skip }, () => {
  withSettings({ limit: 9.5 * MiB }, () => {
    const [a, b, c] = [3, 4, 5].map((m) => addon!.alloc(m * MiB, false)); // three classes
    for (const h of [a, b, c]) addon!.free(h); // 12 MiB freed; 9.5 MiB may stay
    const s = addon!.allocStats();
    assert.equal(s.cached, 9 * MiB, 'the 3 MiB block (freed first) went back to the OS');
    assert.equal(s.cachedBlocks, 2);
    const again4 = addon!.alloc(4 * MiB, false);
    assert.equal(addon!.allocStats().osAllocs, s.osAllocs, '4 MiB is still cached');
    const again3 = addon!.alloc(3 * MiB, false);
    assert.equal(addon!.allocStats().osAllocs, s.osAllocs + 1, '3 MiB was released, so it is a new OS block');
    addon!.free(again4);
    addon!.free(again3);
    // a block larger than the whole limit is never cached
    const huge = addon!.alloc(16 * MiB, false);
    const frees = addon!.allocStats().osFrees;
    addon!.free(huge);
    assert.equal(addon!.allocStats().osFrees, frees + 1);
    assert.ok(addon!.allocStats().cached <= 9.5 * MiB);
    // lowering the limit trims at once
    addon!.allocConfigure(MiB, true, false);
    assert.ok(addon!.allocStats().cached <= MiB);
  });
});

test('with the cache off every free goes back to the OS', { skip }, () => {
  withSettings({ enabled: false }, () => {
    const s0 = addon!.allocStats();
    for (let i = 0; i < 3; i++) addon!.free(addon!.alloc(3 * MiB, false));
    const s1 = addon!.allocStats();
    assert.equal(s1.osAllocs - s0.osAllocs, 3);
    assert.equal(s1.osFrees - s0.osFrees, 3);
    assert.equal(s1.cached, 0);
  });
});

test('zeroed requests are zero on a dirty reused block; poison fills the others with NaN', { skip }, () => {
  withSettings({ poison: true }, () => {
    for (const bytes of [1000, 300 * 1024, 6 * MiB]) {
      const h = addon!.alloc(bytes, false);
      const got = new Float32Array(bytes / 4);
      addon!.read(h, 0, got);
      assert.ok(got.every(Number.isNaN), `poisoned ${bytes}-byte block reads NaN`);
      addon!.write(h, 0, new Float32Array(bytes / 4).fill(3));
      addon!.free(h);
      const hits = addon!.allocStats().cacheHits;
      const z = addon!.alloc(bytes, true);
      assert.equal(addon!.allocStats().cacheHits, hits + 1, 'the dirty block was reused');
      addon!.read(z, 0, got);
      assert.ok(got.every((x) => x === 0), `zeroed ${bytes}-byte reused block`);
      addon!.free(z);
    }
    // the ops' zeros()/empty() contract holds on reused memory
    const dirty = k.full([333, 77], 5, { backend: 'cpu' });
    dirty.dispose();
    const z = k.zeros([333, 77], { backend: 'cpu' });
    assert.ok(z.toFloat32Array().every((x) => x === 0));
    z.dispose();
  });
});

test('stress: many sizes allocated and freed at random never overlap while live', { skip }, () => {
  withSettings({ limit: 64 * MiB }, () => {
    let seed = 12345;
    const rand = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
    // sizes spread over the small classes, the heap/mmap boundary (256 KiB) and a few MiB
    const size = (): number => {
      const r = rand();
      return r < 0.5 ? 1 + Math.floor(rand() * 4096) : r < 0.85 ? Math.floor(rand() * 600_000) : Math.floor(rand() * 6 * MiB);
    };
    const live = new Map<number, { bytes: number; tag: number }>();
    const fill = (bytes: number, tag: number): Uint8Array => {
      const a = new Uint8Array(bytes);
      for (let i = 0; i < bytes; i += 61) a[i] = (tag + i) & 255;
      return a;
    };
    const check = (h: number, e: { bytes: number; tag: number }): void => {
      const got = new Uint8Array(e.bytes);
      addon!.read(h, 0, got);
      for (let i = 0; i < e.bytes; i += 61)
        if (got[i] !== ((e.tag + i) & 255)) assert.fail(`block ${e.tag} (${e.bytes} bytes) overwritten at byte ${i}`);
    };
    for (let step = 0; step < 1500; step++) {
      if (live.size > 0 && rand() < 0.45) {
        const keys = [...live.keys()];
        const h = keys[Math.floor(rand() * keys.length)];
        check(h, live.get(h)!);
        addon!.free(h);
        live.delete(h);
      } else {
        const bytes = size();
        const h = addon!.alloc(bytes, false);
        addon!.write(h, 0, fill(bytes, step));
        live.set(h, { bytes, tag: step });
      }
    }
    for (const [h, e] of live) check(h, e);
    for (const h of live.keys()) addon!.free(h);
    const s = addon!.allocStats();
    assert.ok(s.cacheHits > 100, `only ${s.cacheHits} cache hits over 1500 steps`);
    assert.ok(s.cached <= 64 * MiB);
  });
});
