// Pair data in sentence-transformers' column names (JSONL and Parquet), bad rows named file:line,
// and the evaluation metrics against values worked out by hand.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parquetWriteFile } from 'hyparquet-writer';
import * as k from '../../src/index.js';

const E = k.embeddings;
const dir = mkdtempSync(join(tmpdir(), 'kestrel-pairs-'));
const jsonl = (name: string, rows: unknown[]): string => {
  const p = join(dir, name);
  writeFileSync(p, rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n') + '\n');
  return p;
};

test('readPairs: the four sentence-transformers layouts', async () => {
  const a = await E.readPairs(jsonl('ap.jsonl', [{ anchor: 'q1', positive: 'p1' }, { anchor: 'q2', positive: 'p2' }]));
  assert.equal(a.format, 'triplets');
  assert.deepEqual(a.examples.map((e) => e.texts), [['q1', 'p1'], ['q2', 'p2']]);
  const n = await E.readPairs(jsonl('apn.jsonl', [{ anchor: 'q', positive: 'p', negative: 'n' }, { anchor: 'q', positive: 'p', negatives: ['m'] }, { anchor: 'q', positive: 'p', negative_1: 'o' }]));
  assert.deepEqual(n.examples.map((e) => e.texts), [['q', 'p', 'n'], ['q', 'p', 'm'], ['q', 'p', 'o']]);
  const s = await E.readPairs(jsonl('sts.jsonl', [{ sentence1: 'a', sentence2: 'b', score: 0.3 }]));
  assert.equal(s.format, 'scored');
  assert.equal(s.examples[0].value, 0.3);
  const l = await E.readPairs(jsonl('lab.jsonl', [{ sentence1: 'a', sentence2: 'b', label: 1 }]));
  assert.equal(l.format, 'labelled');
});

test('readPairs: Parquet rows read like the JSONL ones', async () => {
  const file = join(dir, 'pairs.parquet');
  parquetWriteFile({ filename: file, columnData: [{ name: 'anchor', data: ['q1', 'q2'] }, { name: 'positive', data: ['p1', 'p2'] }] });
  const r = await E.readPairs(file);
  assert.deepEqual(r.examples.map((e) => e.texts), [['q1', 'p1'], ['q2', 'p2']]);
});

test('readPairs: bad rows are named file:line with the field', async () => {
  const f = jsonl('bad.jsonl', [{ anchor: 'q', positive: 'p' }, { anchor: 'q', positive: 3 }]);
  await assert.rejects(E.readPairs(f), new RegExp(`${f.replace(/[.]/g, '\\.')}:2: field "positive" must be a string, got a number`));
  await assert.rejects(E.readPairs(jsonl('mixed.jsonl', [{ anchor: 'q', positive: 'p' }, { sentence1: 'a', sentence2: 'b', score: 1 }])), /mixed\.jsonl:2: a scored row in triplets data/);
  await assert.rejects(E.readPairs(jsonl('negs.jsonl', [{ anchor: 'q', positive: 'p', negative: 'n' }, { anchor: 'q', positive: 'p' }])), /negs\.jsonl:2: 0 negatives where earlier rows have 1/);
  await assert.rejects(E.readPairs(jsonl('cols.jsonl', [{ query: 'q', doc: 'p' }])), /cols\.jsonl:1: no known columns/);
  await assert.rejects(E.readPairs(jsonl('label.jsonl', [{ sentence1: 'a', sentence2: 'b', label: 2 }])), /label\.jsonl:1: field "label" must be 0 or 1, got 2/);
  const skipped = await E.readPairs(jsonl('skip.jsonl', [{ anchor: 'q', positive: 'p' }, '{not json', { anchor: 'r', positive: 's' }]), { skipBadLines: true });
  assert.equal(skipped.examples.length, 2);
  assert.equal(skipped.badLines, 1);
});

test('PairDataset: seeded batches that resume where they stopped', () => {
  const ex = Array.from({ length: 10 }, (_, i) => ({ texts: [`q${i}`, `p${i}`], where: `${i}` }));
  const ds = new E.PairDataset(ex, 7);
  const all = [...ds.batches({ batchSize: 3, epoch: 2 })].map((b) => b.map((e) => e.where));
  assert.deepEqual(all.map((b) => b.length), [3, 3, 3, 1]);
  assert.deepEqual([...all.flat()].sort(), ex.map((e) => e.where).sort());
  assert.deepEqual([...ds.batches({ batchSize: 3, epoch: 2, startStep: 2 })].map((b) => b.map((e) => e.where)), all.slice(2));
});

test('ranking metrics and Spearman against hand-computed values', () => {
  // relevant {d1, d4}; ranking d3, d1, d2, d4: hits at ranks 2 and 4
  const m = E.rankingMetrics(['d3', 'd1', 'd2', 'd4'], new Set(['d1', 'd4']), [1, 2, 4]);
  assert.equal(m['recall@1'], 0);
  assert.equal(m['recall@2'], 0.5);
  assert.equal(m['recall@4'], 1);
  assert.equal(m['mrr@10'], 0.5);
  const dcg = 1 / Math.log2(3) + 1 / Math.log2(5);
  const idcg = 1 + 1 / Math.log2(3);
  assert.ok(Math.abs(m['ndcg@10'] - dcg / idcg) < 1e-12);
  // Spearman: ranks of [1, 2, 3, 4] and [10, 30, 20, 40] are 1234 / 1324: 1 - 6 * (0 + 1 + 1 + 0) / (4 * 15) = 0.8
  assert.ok(Math.abs(E.spearman([1, 2, 3, 4], [10, 30, 20, 40]) - 0.8) < 1e-12);
  // ties get the average rank: [1, 1, 2] -> 1.5, 1.5, 3 against 1, 2, 3 -> r = 0.866...
  assert.ok(Math.abs(E.spearman([1, 1, 2], [1, 2, 3]) - Math.sqrt(3) / 2) < 1e-12);
  assert.deepEqual(E.rankByScore([0.1, 0.9, 0.5, 0.9]), [1, 3, 2, 0]);
});
