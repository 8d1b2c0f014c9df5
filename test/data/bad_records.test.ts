// Records that used to get past the reader: a 50 MB line (V8 ran out of heap tokenizing it; now a
// bad record over maxRecordBytes, checked in a child process with a 256 MB heap), token ids beyond
// int32 or the model's vocabulary (wrapped, or failed at the first training step; now bad records
// naming file:line, for read and tokenizer-made ids alike), and a chat template that runs away.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { DataError, loadDataset, readLines } from '../../src/data/index.js';
import { type Tokenizer, loadTokenizer } from '../../src/tokenizer/index.js';
import { fixture } from '../fixtures.js';

const gpt2Dir = fixture('tokenizers', 'gpt2');
const tmp = mkdtempSync(join(tmpdir(), 'kestrel-bad-records-'));
const write = (name: string, lines: readonly string[]): string => {
  const p = join(tmp, name);
  writeFileSync(p, lines.join('\n') + '\n');
  return p;
};
const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const ids = (input_ids: unknown[], labels?: unknown[]): string => JSON.stringify(labels === undefined ? { input_ids } : { input_ids, labels });

async function rejectsAt(p: Promise<unknown>, where: string, what: RegExp): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    assert.ok(e instanceof DataError, `${e.name}: ${e.message}`);
    assert.ok(e.message.startsWith(`${where}: `), e.message);
    assert.match(e.message, what);
    return true;
  });
}

describe('record size limit', () => {
  test('readLines: a line over the cap is counted, not kept; numbering and multi-byte characters across read chunks survive', async () => {
    const head = `one\r\n${'x'.repeat(100)}\n\n`;
    const long = 'a'.repeat(2 ** 20 - 1 - head.length) + 'é'; // 'é' (2 bytes) straddles the 1 MiB read chunk boundary
    const f = join(tmp, 'lines.txt');
    writeFileSync(f, `${head}${long}\nlast`);
    const got = [];
    for await (const l of readLines(f, 2 ** 21)) got.push(l);
    assert.deepEqual(got.map((l) => l.line), [1, 2, 3, 4, 5]);
    assert.deepEqual([got[0].text, got[2].text, got[4].text], ['one\r', '', 'last']);
    assert.equal(got[3].text, long);
    const capped = [];
    for await (const l of readLines(f, 50)) capped.push(l);
    assert.deepEqual(capped.map((l) => [l.text === null, l.bytes]), [[false, 4], [true, 100], [false, 0], [true, Buffer.byteLength(long)], [false, 4]]);
  });

  test('a line over maxRecordBytes is a bad record naming file:line; skipBadLines counts it and keeps the rest', async () => {
    const f = write('big_line.jsonl', [ids([1, 2]), ids(Array(1000).fill(7)), ids([3])]);
    await rejectsAt(loadDataset(f, { format: 'pretokenized', seqLen: 4, maxRecordBytes: 1000 }), `${f}:2`, /over the record size limit of .* \(maxRecordBytes\)/);
    const { stats } = await loadDataset(f, { format: 'pretokenized', seqLen: 4, maxRecordBytes: 1000, skipBadLines: true });
    assert.deepEqual([stats.records, stats.badLines], [2, 1]);
    assert.equal((await loadDataset(f, { format: 'pretokenized', seqLen: 4 })).stats.records, 3); // under the 16 MiB default
  });

  test('a 50 MB single-line record under a 256 MB heap: a clear error, or skipped with skipBadLines; never a V8 abort', { skip: gpt2Dir.skip }, () => {
    const f = join(tmp, 'huge.jsonl');
    writeFileSync(f, `{"text": "a small first document"}\n{"text": "${'hello world '.repeat(50e6 / 12)}"}\n{"text": "and a last one"}\n`);
    const script = `
      import { loadDataset } from ${JSON.stringify(new URL('../../src/data/index.ts', import.meta.url).href)};
      import { loadTokenizer } from ${JSON.stringify(new URL('../../src/tokenizer/index.ts', import.meta.url).href)};
      const tokenizer = await loadTokenizer(${JSON.stringify(gpt2Dir.path)}, { source: 'vocab.json' });
      for (const skipBadLines of [false, true]) {
        try {
          const { stats } = await loadDataset(${JSON.stringify(f)}, { tokenizer, seqLen: 16, skipBadLines });
          console.log('loaded', stats.records, stats.badLines);
        } catch (e) { console.log('error', e.message); }
      }`;
    const r = spawnSync(process.execPath, ['--max-old-space-size=256', '--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, `rc ${r.status} signal ${r.signal} (134 / SIGABRT: V8 out of memory)\n${r.stdout}\n${r.stderr.slice(-2000)}`);
    const [strict, skipping] = r.stdout.trim().split('\n');
    assert.match(strict, new RegExp(`^error ${esc(f)}:2: the line is 47\\.7 MiB \\(50000\\d+ bytes\\), over the record size limit of 16\\.0 MiB \\(maxRecordBytes\\)$`));
    assert.equal(skipping, 'loaded 2 1');
  });
});

describe('token ids', () => {
  test('pretokenized ids must fit int32 (no silent wrap), be integers and non-negative (labels: or -100)', async () => {
    for (const [line, bad, what] of [
      [ids([1, 2 ** 31]), 'input_ids[1]', ' in [0, 2^31), got 2147483648'],
      [ids([1, 2 ** 32 + 5]), 'input_ids[1]', ' in [0, 2^31), got 4294967301'],
      [ids([-100, 1]), 'input_ids[0]', ' in [0, 2^31), got -100'],
      [ids([1, 2], [1, -1]), 'labels[1]', ' in [0, 2^31) or -100, got -1'],
      [ids([1, 2.5]), 'input_ids[1]', ' (an integer), got 2.5'],
    ] as const) {
      const f = write('wide.jsonl', [ids([1, 2], [-100, 2]), line]);
      await rejectsAt(loadDataset(f, { format: 'pretokenized', seqLen: 4 }), `${f}:2`, new RegExp(`field "${esc(bad)}" must be a token id${esc(what)}$`));
    }
  });

  test('vocabSize: ids and labels at or past it are bad records naming file:line, skipped and counted with skipBadLines', async () => {
    const f = write('vocab.jsonl', [ids([1, 999]), ids([1, 1000]), ids([5, 6], [-100, 1000]), ids([7], [-100])]);
    await rejectsAt(loadDataset(f, { format: 'pretokenized', seqLen: 4, vocabSize: 1000 }), `${f}:2`,
      /field "input_ids\[1\]" must be a token id in \[0, 1000\) \(the vocabulary\), got 1000$/);
    const { train, stats } = await loadDataset(f, { format: 'pretokenized', seqLen: 4, pack: false, vocabSize: 1000, skipBadLines: true });
    assert.deepEqual([stats.records, stats.badLines], [2, 2]);
    assert.match(stats.badLineMessages[1], /:3: field "labels\[1\]" must be a token id in \[0, 1000\) \(the vocabulary\) or -100, got 1000$/);
    assert.deepEqual([0, 1].map((i) => train.example(i).inputIds), [[1, 999], [7]]);
    await assert.rejects(loadDataset(f, { format: 'pretokenized', seqLen: 4, vocabSize: 0 }), /vocabSize must be an integer in \[1, 2\^31\], got 0/);
  });

  describe('ids made by a tokenizer', { skip: gpt2Dir.skip }, () => {
    let gpt2: Tokenizer;
    before(async () => { gpt2 = await loadTokenizer(gpt2Dir.path, { source: 'vocab.json' }); });

    test('text ids past a smaller model vocabulary are caught while reading; the cache keeps vocabSize apart', async () => {
      const f = write('text.jsonl', [JSON.stringify({ text: 'a b' }), JSON.stringify({ text: 'Hello world' })]);
      const cacheDir = join(tmp, 'cache');
      const ok = await loadDataset(f, { tokenizer: gpt2, seqLen: 8, vocabSize: 50257, cacheDir });
      assert.equal(ok.stats.records, 2);
      // 'a b' is [64, 275], then eos 50256. A model of 10000 tokens cannot take them.
      await rejectsAt(loadDataset(f, { tokenizer: gpt2, seqLen: 8, vocabSize: 10000, cacheDir }), `${f}:1`,
        /field "input_ids\[2\]" must be a token id in \[0, 10000\) \(the vocabulary\), got 50256; the tokenizer made it: does it match the model\?$/);
    });

    test('a chat template that runs past its limits stops the load, even with skipBadLines (it would fail on every record)', async () => {
      const f = write('chat.jsonl', [JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }] })]);
      const t0 = performance.now();
      await assert.rejects(loadDataset(f, { tokenizer: gpt2, seqLen: 8, skipBadLines: true, chatTemplate: '{% for i in range(100000000) %}x{% endfor %}' }), (e: Error) => {
        assert.ok(!(e instanceof DataError));
        assert.match(e.message, new RegExp(`^${esc(f)}:1: chat template ".*": exceeded the limit of 100000 range\\(\\) items`));
        return true;
      });
      assert.ok(performance.now() - t0 < 2000);
    });
  });
});
