// Datasets: seeded shuffling (same seed+epoch -> same batches, each epoch a permutation), exact
// resume from startStep, a deterministic disjoint eval split, and the tokenization cache (hit,
// invalidation by file change, atomic entries, damaged entries rebuilt).
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { type Batch, SeededRandom, loadDataset, permutation } from '../../src/data/index.js';
import { type Tokenizer, loadTokenizer } from '../../src/tokenizer/index.js';
import { fixture } from '../fixtures.js';

const gpt2Dir = fixture('tokenizers', 'gpt2');
const tmp = mkdtempSync(join(tmpdir(), 'kestrel-dataset-'));
const N = 23;
// Document i is [i + 1, ...] with i % 4 + 1 tokens: its first id names it.
const docsFile = join(tmp, 'docs.jsonl');
writeFileSync(docsFile, Array.from({ length: N }, (_, i) => JSON.stringify({ input_ids: Array.from({ length: (i % 4) + 1 }, (_, k) => i + 1 + 100 * k) })).join('\n'));
const firstIds = (b: Batch): number[] => b.inputIds.map((r) => r[0]);

describe('seeded random numbers', () => {
  test('the same keys give the same stream; below(n) stays in range; permutations are permutations', () => {
    const a = new SeededRandom(42, 1, 0), b = new SeededRandom(42, 1, 0), c = new SeededRandom(42, 1, 1);
    const xs = Array.from({ length: 8 }, () => a.nextU32());
    assert.deepEqual(Array.from({ length: 8 }, () => b.nextU32()), xs);
    assert.notDeepEqual(Array.from({ length: 8 }, () => c.nextU32()), xs);
    for (let i = 0; i < 1000; i++) {
      const v = a.below(7);
      assert.ok(Number.isInteger(v) && v >= 0 && v < 7);
    }
    const p = permutation(100, new SeededRandom(3));
    assert.deepEqual([...p].sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i));
    assert.deepEqual(permutation(100, new SeededRandom(3)), p);
    assert.notDeepEqual(permutation(100, new SeededRandom(4)), p);
    assert.notDeepEqual(new SeededRandom(2 ** 40).nextU32(), new SeededRandom(0).nextU32()); // high bits count
  });
});

describe('batches', () => {
  test('same seed and epoch -> same batches; each epoch visits every example once; epochs differ', async () => {
    const { train } = await loadDataset(docsFile, { format: 'pretokenized', seqLen: 8, seed: 7 });
    const again = (await loadDataset(docsFile, { format: 'pretokenized', seqLen: 8, seed: 7 })).train;
    const e0 = [...train.batches({ batchSize: 5, epoch: 0 })];
    assert.deepEqual([...again.batches({ batchSize: 5, epoch: 0 })], e0);
    assert.equal(e0.length, Math.ceil(N / 5));
    const order0 = e0.flatMap(firstIds);
    assert.deepEqual([...order0].sort((a, b) => a - b), Array.from({ length: N }, (_, i) => i + 1));
    assert.notDeepEqual(order0, Array.from({ length: N }, (_, i) => i + 1));
    const order1 = [...train.batches({ batchSize: 5, epoch: 1 })].flatMap(firstIds);
    assert.notDeepEqual(order1, order0);
    assert.notDeepEqual([...train.batches({ batchSize: 5, epoch: 0, seed: 8 })].flatMap(firstIds), order0);
    assert.deepEqual([...train.batches({ batchSize: 5, shuffle: false })].flatMap(firstIds), Array.from({ length: N }, (_, i) => i + 1));
  });

  test('resume from startStep yields exactly the batches an uninterrupted run would have yielded next', async () => {
    const { train } = await loadDataset(docsFile, { format: 'pretokenized', seqLen: 8, seed: 11 });
    for (const epoch of [0, 3]) {
      const whole = [...train.batches({ batchSize: 4, epoch })];
      for (const k of [0, 1, 2, whole.length - 1, whole.length]) {
        // A fresh load, as after a restart.
        const resumed = (await loadDataset(docsFile, { format: 'pretokenized', seqLen: 8, seed: 11 })).train;
        assert.deepEqual([...resumed.batches({ batchSize: 4, epoch, startStep: k })], whole.slice(k), `epoch ${epoch} step ${k}`);
      }
    }
    assert.equal(train.stepsPerEpoch(4), 6);
    assert.equal(train.stepsPerEpoch(4, true), 5);
    assert.equal([...train.batches({ batchSize: 4, dropLast: true })].length, 5);
    assert.throws(() => train.batches({ batchSize: 4, startStep: 7 }).next(), /startStep 7 is past the 6 steps/);
    assert.throws(() => train.batches({ batchSize: 0 }).next(), /batchSize must be an integer >= 1/);
  });

  test('eval split: a deterministic, disjoint fraction of the documents', async () => {
    const ids = (ds: { length: number; example(i: number): { inputIds: number[] } }): number[] => Array.from({ length: ds.length }, (_, i) => ds.example(i).inputIds[0]);
    const a = await loadDataset(docsFile, { format: 'pretokenized', seqLen: 8, seed: 5, evalFraction: 0.2 });
    const b = await loadDataset(docsFile, { format: 'pretokenized', seqLen: 8, seed: 5, evalFraction: 0.2 });
    const c = await loadDataset(docsFile, { format: 'pretokenized', seqLen: 8, seed: 6, evalFraction: 0.2 });
    const [tr, ev] = [ids(a.train), ids(a.eval!)];
    assert.equal(ev.length, Math.round(0.2 * N));
    assert.equal(a.stats.evalExamples, ev.length);
    assert.deepEqual([...tr, ...ev].sort((x, y) => x - y), Array.from({ length: N }, (_, i) => i + 1));
    assert.ok(ev.every((x) => !tr.includes(x)));
    assert.deepEqual(ids(b.eval!), ev);
    assert.notDeepEqual(ids(c.eval!), ev);
    // Packed: whole documents are held out (no row mixes train and eval documents).
    const p = await loadDataset(docsFile, { format: 'pretokenized', seqLen: 4, pack: true, seed: 5, evalFraction: 0.2 });
    const evalTokens = new Set(Array.from({ length: p.eval!.length }, (_, i) => p.eval!.example(i)).flatMap((r) => r.inputIds.filter((_, t) => r.attentionMask[t] === 1)));
    assert.deepEqual([...evalTokens].filter((x) => x <= N).sort((x, y) => x - y), [...ev].sort((x, y) => x - y));
    await assert.rejects(loadDataset(docsFile, { format: 'pretokenized', seqLen: 8, evalFraction: 1 }), /evalFraction must be in \[0, 1\)/);
  });
});

describe('tokenization cache', { skip: gpt2Dir.skip }, () => {
  let gpt2: Tokenizer;
  let calls = 0;
  before(async () => {
    gpt2 = await loadTokenizer(gpt2Dir.path, { source: 'vocab.json' });
    const encode = gpt2.encode.bind(gpt2);
    gpt2.encode = (...args: Parameters<Tokenizer['encode']>) => { calls++; return encode(...args); };
  });
  const texts = Array.from({ length: 30 }, (_, i) => `Cached document number ${i} with some words.`);

  test('a second load reads the cache; changing the file (content or mtime) or the options invalidates it', async () => {
    const dir = join(tmp, 'cache'), f = join(tmp, 'text.jsonl');
    writeFileSync(f, texts.map((text) => JSON.stringify({ text })).join('\n') + '\n');
    const opts = { tokenizer: gpt2, seqLen: 16, cacheDir: dir };
    calls = 0;
    const first = await loadDataset(f, opts);
    assert.deepEqual([first.stats.cacheHits, first.stats.cacheMisses], [0, 1]);
    assert.ok(calls >= texts.length);
    const entries = readdirSync(dir);
    assert.equal(entries.length, 1);
    assert.match(entries[0], /^[0-9a-f]{64}\.kdata$/); // renamed into place, no temporary left
    calls = 0;
    const second = await loadDataset(f, { ...opts, seqLen: 24 }); // seqLen and packing are applied after the cache
    assert.deepEqual([second.stats.cacheHits, second.stats.cacheMisses, calls], [1, 0, 0]);
    assert.equal(second.stats.tokens, first.stats.tokens);
    const rows = (d: typeof first.train): number[][] => Array.from({ length: d.length }, (_, i) => d.example(i).inputIds);
    assert.deepEqual(rows((await loadDataset(f, opts)).train), rows(first.train));

    appendFileSync(f, JSON.stringify({ text: 'A new document.' }) + '\n');
    calls = 0;
    const changed = await loadDataset(f, opts);
    assert.deepEqual([changed.stats.cacheHits, changed.stats.cacheMisses], [0, 1]);
    assert.ok(calls > 0);
    assert.equal(changed.stats.documents, texts.length + 1);

    const later = new Date(Date.now() + 5000);
    utimesSync(f, later, later);
    assert.equal((await loadDataset(f, opts)).stats.cacheMisses, 1, 'mtime change');
    assert.equal((await loadDataset(f, opts)).stats.cacheHits, 1);
    assert.equal((await loadDataset(f, { ...opts, format: 'text', eosId: 13 })).stats.cacheMisses, 1, 'another eos');
  });

  test('a folder of files in different formats: per-file formats and cache entries; hits give the same examples', async () => {
    const folder = join(tmp, 'mixed'), dir = join(tmp, 'cache3');
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, 'a_text.jsonl'), texts.slice(0, 3).map((text) => JSON.stringify({ text })).join('\n'));
    writeFileSync(join(folder, 'b_alpaca.json'), JSON.stringify([{ instruction: 'Say hi.', output: 'Hi.' }, { instruction: 'Say no.', input: 'politely', output: 'No, thanks.' }]));
    writeFileSync(join(folder, 'c_text.jsonl'), JSON.stringify({ text: 'Last one.' }));
    const opts = { tokenizer: gpt2, seqLen: 64, cacheDir: dir };
    const cold = await loadDataset(folder, opts);
    assert.deepEqual(Object.values(cold.stats.formats), ['text', 'alpaca', 'text']);
    assert.equal(cold.stats.packed, false); // not all text: padded by default
    assert.equal(cold.stats.documents, 6);
    const warm = await loadDataset(folder, opts);
    assert.deepEqual([warm.stats.cacheHits, warm.stats.cacheMisses], [3, 0]);
    const all = (d: typeof cold.train) => Array.from({ length: d.length }, (_, i) => d.example(i));
    assert.deepEqual(all(warm.train), all(cold.train));
    assert.equal(all(cold.train)[3].labels[0], -100); // the alpaca prompt
  });

  test('a damaged entry is ignored and rewritten; bad-line counts come back from the cache', async () => {
    const dir = join(tmp, 'cache2'), f = join(tmp, 'some_bad.jsonl');
    writeFileSync(f, ['{"text": "ok one"}', '{"text": ', '{"text": "ok two"}'].join('\n'));
    const opts = { tokenizer: gpt2, seqLen: 16, cacheDir: dir, skipBadLines: true };
    const first = await loadDataset(f, opts);
    assert.equal(first.stats.badLines, 1);
    const hit = await loadDataset(f, opts);
    assert.deepEqual([hit.stats.cacheHits, hit.stats.badLines, hit.stats.badLineMessages], [1, 1, first.stats.badLineMessages]);
    // Without skipBadLines the cache entry made while skipping is not used: the error comes back.
    await assert.rejects(loadDataset(f, { ...opts, skipBadLines: false }), new RegExp(`${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2: bad JSON`));
    const [entry] = readdirSync(dir);
    writeFileSync(join(dir, entry), 'garbage');
    const rebuilt = await loadDataset(f, opts);
    assert.deepEqual([rebuilt.stats.cacheHits, rebuilt.stats.cacheMisses, rebuilt.stats.documents], [0, 1, 2]);
    assert.equal((await loadDataset(f, opts)).stats.cacheHits, 1);
  });
});
