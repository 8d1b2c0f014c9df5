// Readers: JSONL (streamed, blank lines, BOM, CRLF), JSON (array and {"data"}), Parquet written
// with hyparquet-writer (row groups, nested lists, INT64), folders in sorted order, and malformed
// input reported as file:line (or record) with what is wrong, or counted with skipBadLines.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { BadLines, DataError, type DataRecord, listDataFiles, loadDataset, readRecords } from '../../src/data/index.js';

const tmp = mkdtempSync(join(tmpdir(), 'kestrel-readers-'));
const write = (name: string, text: string): string => {
  const p = join(tmp, name);
  mkdirSync(join(p, '..'), { recursive: true });
  writeFileSync(p, text);
  return p;
};

async function all(file: string, skip = false): Promise<{ recs: DataRecord[]; bad: BadLines }> {
  const bad = new BadLines(skip);
  const recs: DataRecord[] = [];
  for await (const r of readRecords(file, bad)) recs.push(r);
  return { recs, bad };
}

async function rejectsWith(p: Promise<unknown>, ...parts: string[]): Promise<void> {
  await assert.rejects(p, (e: Error) => {
    for (const s of parts) assert.ok(e.message.includes(s), `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(s)}`);
    return true;
  });
}

describe('data readers', () => {
  test('JSONL: one object per line; blank lines, a BOM and CRLF endings are fine; lines are numbered', async () => {
    const f = write('a.jsonl', '\ufeff{"text": "one"}\r\n\r\n{"text": "two"}\n   \n{"text": "three"}');
    const { recs } = await all(f);
    assert.deepEqual(recs.map((r) => r.value.text), ['one', 'two', 'three']);
    assert.deepEqual(recs.map((r) => r.where.line), [1, 3, 5]);
  });

  test('JSON: a top-level array, or {"data": [...]}; records are numbered from 1', async () => {
    const a = write('arr.json', JSON.stringify([{ text: 'x' }, { text: 'y' }], null, 2));
    const d = write('data.json', JSON.stringify({ version: 1, data: [{ text: 'z' }] }));
    assert.deepEqual((await all(a)).recs.map((r) => [r.value.text, r.where.record]), [['x', 1], ['y', 2]]);
    assert.deepEqual((await all(d)).recs.map((r) => r.value.text), ['z']);
    const wrong = write('obj.json', '{"rows": []}');
    await rejectsWith(all(wrong), `${wrong}: expected a JSON array of records or an object {"data": [...]}`, 'rows');
  });

  test('JSON syntax error names the line; skipBadLines skips the file and reports it', async () => {
    const f = write('broken.json', '[\n  {"text": "a"},\n  {"text": "b",,}\n]');
    await rejectsWith(all(f), `${f}: bad JSON at line 3`);
    const { recs, bad } = await all(f, true);
    assert.equal(recs.length, 0);
    assert.equal(bad.count, 1);
    assert.match(bad.messages[0], /whole file was skipped/);
  });

  test('Parquet: row groups streamed, nested lists and INT64 ids become plain numbers', async () => {
    const buf = parquetWriteBuffer({
      columnData: [
        { name: 'text', data: ['a', 'b', 'c', 'd', 'e'] },
        { name: 'input_ids', data: [[1n, 2n], [3n], [4n, 5n, 6n], [7n], [8n, 9n]] },
        { name: 'messages', data: [[{ role: 'user', content: 'hi' }], [], [], [], [{ role: 'assistant', content: 'yo' }]] },
      ],
      schema: [
        { name: 'root', num_children: 3 },
        { name: 'text', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
        { name: 'input_ids', repetition_type: 'OPTIONAL', num_children: 1, converted_type: 'LIST' },
        { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
        { name: 'element', type: 'INT64', repetition_type: 'REQUIRED' },
        { name: 'messages', repetition_type: 'OPTIONAL', num_children: 1, converted_type: 'LIST' },
        { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
        { name: 'element', repetition_type: 'REQUIRED', num_children: 2 },
        { name: 'role', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
        { name: 'content', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
      ],
      rowGroupSize: 2,
    });
    const f = join(tmp, 'rows.parquet');
    writeFileSync(f, new Uint8Array(buf));
    const { recs } = await all(f);
    assert.deepEqual(recs.map((r) => r.value.text), ['a', 'b', 'c', 'd', 'e']);
    assert.deepEqual(recs.map((r) => r.where.record), [1, 2, 3, 4, 5]);
    assert.deepEqual(recs[2].value.input_ids, [4, 5, 6]);
    assert.deepEqual(recs[4].value.messages, [{ role: 'assistant', content: 'yo' }]);
    // The same file through loadDataset as pre-tokenized data.
    const { train, stats } = await loadDataset(f, { format: 'pretokenized', seqLen: 8, pack: false });
    assert.equal(stats.documents, 5);
    assert.deepEqual(train.example(2).inputIds, [4, 5, 6]);
    const junk = write('junk.parquet', 'not a parquet file at all');
    await rejectsWith(all(junk), `${junk}: cannot read Parquet`);
  });

  test('folders: data files recursively in sorted order; hidden and other files skipped', () => {
    const dir = join(tmp, 'folder');
    for (const n of ['b.jsonl', 'a.json', 'sub/c.parquet', 'sub/0.jsonl', 'README.md', '.cache/x.jsonl', '10.jsonl', '9.jsonl']) {
      mkdirSync(join(dir, n, '..'), { recursive: true });
      writeFileSync(join(dir, n), '');
    }
    assert.deepEqual(listDataFiles(dir).map((p) => p.slice(dir.length + 1)), ['10.jsonl', '9.jsonl', 'a.json', 'b.jsonl', 'sub/0.jsonl', 'sub/c.parquet']);
    assert.throws(() => listDataFiles(join(tmp, 'nope')), /does not exist/);
    assert.throws(() => listDataFiles(join(dir, 'README.md')), /unknown file type ".md"/);
    mkdirSync(join(tmp, 'empty'), { recursive: true });
    assert.throws(() => listDataFiles(join(tmp, 'empty')), /holds no .jsonl/);
  });
});

describe('malformed records', () => {
  const lines = [
    '{"input_ids": [1, 2, 3]}',
    '{"input_ids": [4, 5',           // line 2: bad JSON
    '[1, 2]',                        // line 3: not an object
    '{"ids": [1]}',                  // line 4: missing field
    '{"input_ids": "1 2 3"}',        // line 5: wrong type
    '{"input_ids": [6, -3]}',        // line 6: not a token id
    '{"input_ids": [7, 8], "labels": [7]}', // line 7: labels length
    '{"input_ids": [9]}',
  ];
  const f = write('bad.jsonl', lines.join('\n') + '\n');

  test('each kind of error names file:line and what is wrong, and stops the load', async () => {
    const cases: [number, string][] = [
      [2, 'bad JSON'], [3, 'expected a JSON object, got an array'], [4, 'missing field "input_ids"'],
      [5, 'field "input_ids" must be an array of token ids, got a string'], [6, 'field "input_ids[1]" must be a token id'],
      [7, 'field "labels" has 1 entries but "input_ids" has 2'],
    ];
    for (const [line, what] of cases) {
      const g = write(`bad_${line}.jsonl`, [lines[0], ...Array(line - 2).fill('{"input_ids": [1]}'), lines[line - 1]].join('\n'));
      await assert.rejects(loadDataset(g, { format: 'pretokenized', seqLen: 4 }), (e: Error) => {
        assert.ok(e instanceof DataError);
        assert.ok(e.message.startsWith(`${g}:${line}: ${what}`), e.message);
        return true;
      });
    }
  });

  test('skipBadLines: bad lines are counted and reported, the good ones kept', async () => {
    const { train, stats } = await loadDataset(f, { format: 'pretokenized', seqLen: 4, pack: false, skipBadLines: true });
    assert.equal(stats.badLines, 6);
    assert.equal(stats.records, 2);
    assert.deepEqual(stats.badLineMessages.map((m) => Number(m.slice(f.length + 1).split(':')[0])), [2, 3, 4, 5, 6, 7]);
    assert.deepEqual([0, 1].map((i) => train.example(i).inputIds), [[1, 2, 3], [9]]);
  });

  test('auto format: a record no format fits is a bad record naming its fields', async () => {
    const g = write('nofmt.jsonl', '{"prompt": "x", "completion": "y"}\n');
    await rejectsWith(loadDataset(g, { seqLen: 4 }), `${g}:1: cannot tell the data format from the fields "prompt", "completion"`);
  });
});
