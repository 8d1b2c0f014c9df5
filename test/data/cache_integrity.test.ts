// The tokenization cache under damage: a flipped byte anywhere after the fixed head, or a truncated
// entry, is caught by the entry's checksum; the load then warns, reads the data file again (the
// same dataset as without a cache) and rewrites the entry. The FNV-1a checksum itself is checked too.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, mock, test } from 'node:test';
import { loadDataset } from '../../src/data/index.js';
import { FNV_OFFSET, fnv1a32 } from '../../src/data/checksum.js';

const tmp = mkdtempSync(join(tmpdir(), 'kestrel-cache-integrity-'));
const file = join(tmp, 'docs.jsonl');
// Labels differ from ids (-100 on the first token), so the entry has all three sections.
writeFileSync(file, Array.from({ length: 12 }, (_, i) => JSON.stringify({ input_ids: [i + 1, 2 * i + 3, 7], labels: [-100, 2 * i + 3, 7] })).join('\n'));
const opts = (cacheDir?: string) => ({ format: 'pretokenized' as const, seqLen: 4, pack: false, cacheDir });
type Loaded = Awaited<ReturnType<typeof loadDataset>>;
const examples = (d: Loaded) => Array.from({ length: d.train.length }, (_, i) => d.train.example(i));

describe('data cache integrity', () => {
  test('fnv1a32: the reference vector, chaining equals one pass, any one-word change shows', () => {
    const bytes = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
    // One step by hand: (offset ^ 0x04030201) * 16777619 mod 2^32, then the second word.
    const step = (h: number, w: number): number => Math.imul(h ^ w, 16777619) >>> 0;
    assert.equal(fnv1a32(bytes), step(step(FNV_OFFSET, 0x04030201), 0x08070605));
    assert.equal(fnv1a32(bytes.subarray(4), fnv1a32(bytes.subarray(0, 4))), fnv1a32(bytes));
    assert.equal(fnv1a32(Buffer.concat([Buffer.alloc(1), bytes]).subarray(1)), fnv1a32(bytes)); // unaligned input
    for (let i = 0; i < 8; i++) {
      const b = bytes.slice();
      b[i] ^= 0x10;
      assert.notEqual(fnv1a32(b), fnv1a32(bytes), `byte ${i}`);
    }
    assert.throws(() => fnv1a32(new Uint8Array(3)), /3 bytes is not a multiple of 4/);
  });

  test('a flipped byte or a truncated entry: a warning, the same dataset as without a cache, the entry rewritten', async () => {
    const want = examples(await loadDataset(file, opts()));
    const dir = join(tmp, 'cache');
    const cold = await loadDataset(file, opts(dir));
    assert.deepEqual(examples(cold), want);
    const [name] = readdirSync(dir);
    const entry = join(dir, name);
    const good = readFileSync(entry);
    const flip = (at: number): Buffer => {
      const b = Buffer.from(good);
      b[at] ^= 0x01;
      return b;
    };
    const damages: [string, Buffer, string][] = [
      ['a token id (high byte)', flip(good.length - 4 * 36 - 1), 'checksum mismatch'],
      ['a label', flip(good.length - 5), 'checksum mismatch'],
      ['a document offset', flip(good.length - 2 * 4 * 36 - 8 * 13 + 9), 'checksum mismatch'],
      ['the header', flip(30), 'checksum mismatch'],
      ['truncated', good.subarray(0, good.length - 4), 'checksum mismatch'],
      ['truncated mid-word', good.subarray(0, good.length - 2), 'truncated'],
    ];
    for (const [what, damaged, why] of damages) {
      writeFileSync(entry, damaged);
      const warn = mock.method(process, 'emitWarning', () => {});
      let got: Loaded;
      try {
        got = await loadDataset(file, opts(dir));
      } finally {
        warn.mock.restore();
      }
      assert.deepEqual([got.stats.cacheHits, got.stats.cacheMisses], [0, 1], what);
      assert.deepEqual(examples(got), want, what);
      assert.equal(warn.mock.callCount(), 1, what);
      assert.equal(String(warn.mock.calls[0].arguments[0]), `data cache: ${entry} is damaged (${why}); rebuilding it`, what);
      assert.ok(readFileSync(entry).equals(good), `${what}: the entry is rewritten`);
      assert.equal((await loadDataset(file, opts(dir))).stats.cacheHits, 1, what);
    }
  });
});
