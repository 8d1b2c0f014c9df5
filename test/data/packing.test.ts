// Packing (positions restart at document starts, documentIds, -100 at each document's first
// token and on padding, every corpus token exactly once and in order) and padding/truncation.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { type Batch, IGNORE_INDEX, type Row, collate, loadDataset, packExamples, padRow } from '../../src/data/index.js';
import { type Tokenizer, loadTokenizer } from '../../src/tokenizer/index.js';
import { fixture } from '../fixtures.js';

const gpt2Dir = fixture('tokenizers', 'gpt2');
const tmp = mkdtempSync(join(tmpdir(), 'kestrel-packing-'));
const P = 0; // pad id
const doc = (...ids: number[]) => ({ inputIds: ids, labels: ids.slice() });
function first(batches: Generator<Batch, void, undefined>): Batch {
  const r = batches.next();
  assert.ok(!r.done, 'no batch');
  return r.value;
}

describe('packing', () => {
  test('rows of seqLen: positions restart per document, documentIds per row, -100 at document starts and padding', () => {
    const rows = packExamples([doc(1, 2, 3), doc(4, 5, 6, 7, 8), doc(9, 10)], { seqLen: 4, padId: P });
    const want: Row[] = [
      { inputIds: [1, 2, 3, 4], labels: [-100, 2, 3, -100], attentionMask: [1, 1, 1, 1], positionIds: [0, 1, 2, 0], documentIds: [0, 0, 0, 1] },
      // B continues from the previous row: it restarts at position 0 but its first token here is not a document start.
      { inputIds: [5, 6, 7, 8], labels: [5, 6, 7, 8], attentionMask: [1, 1, 1, 1], positionIds: [0, 1, 2, 3], documentIds: [0, 0, 0, 0] },
      { inputIds: [9, 10, P, P], labels: [-100, 10, -100, -100], attentionMask: [1, 1, 0, 0], positionIds: [0, 1, 0, 1], documentIds: [0, 0, -1, -1] },
    ];
    assert.deepEqual(rows, want);
  });

  test('SFT labels survive packing (their -100s stay)', () => {
    const rows = packExamples([{ inputIds: [1, 2, 3], labels: [-100, -100, 3] }, { inputIds: [4, 5], labels: [-100, 5] }], { seqLen: 8, padId: P });
    assert.deepEqual(rows[0].labels, [-100, -100, 3, -100, 5, -100, -100, -100]);
    assert.deepEqual(rows[0].documentIds, [0, 0, 0, 1, 1, -1, -1, -1]);
  });

  test('padding: right-pad with pad id, labels -100, mask 0; longer examples cut', () => {
    assert.deepEqual(padRow(doc(5, 6), 4, 9), { inputIds: [5, 6, 9, 9], labels: [5, 6, -100, -100], attentionMask: [1, 1, 0, 0] });
    assert.deepEqual(padRow(doc(1, 2, 3, 4, 5), 3, 9), { inputIds: [1, 2, 3], labels: [1, 2, 3], attentionMask: [1, 1, 1] });
    const b = collate([padRow(doc(1), 2, 0), padRow(doc(2, 3), 2, 0)]);
    assert.deepEqual(b, { inputIds: [[1, 0], [2, 3]], labels: [[1, -100], [2, 3]], attentionMask: [[1, 0], [1, 1]] });
  });
});

describe('packing through loadDataset', { skip: gpt2Dir.skip }, () => {
  let gpt2: Tokenizer;
  before(async () => { gpt2 = await loadTokenizer(gpt2Dir.path, { source: 'vocab.json' }); });
  const texts = Array.from({ length: 40 }, (_, i) => `Document ${i}: ${'lorem ipsum dolor '.repeat(1 + (i * 7) % 13)}end.`);

  test('text: every token of the corpus appears once, in order; positions restart after each eos', async () => {
    const f = join(tmp, 'corpus.jsonl');
    writeFileSync(f, texts.map((text) => JSON.stringify({ text })).join('\n'));
    const seqLen = 32;
    const { train, eval: ev, stats } = await loadDataset(f, { tokenizer: gpt2, seqLen });
    assert.equal(ev, null);
    assert.equal(stats.packed, true);
    const corpus = texts.flatMap((t) => [...gpt2.encode(t), 50256]);
    assert.equal(stats.tokens, corpus.length);
    assert.equal(train.length, Math.ceil(corpus.length / seqLen));
    const seen: number[] = [];
    for (let i = 0; i < train.length; i++) {
      const r = train.example(i);
      assert.equal(r.inputIds.length, seqLen);
      for (let t = 0; t < seqLen; t++) {
        if (r.attentionMask[t] === 0) continue;
        seen.push(r.inputIds[t]);
        // A token right after an eos starts a document: position 0, a new documentId, no loss.
        const start = t > 0 && r.inputIds[t - 1] === 50256;
        if (start) assert.deepEqual([r.positionIds![t], r.documentIds![t], r.labels[t]], [0, r.documentIds![t - 1] + 1, IGNORE_INDEX]);
        else if (t > 0) assert.deepEqual([r.positionIds![t], r.documentIds![t], r.labels[t]], [r.positionIds![t - 1] + 1, r.documentIds![t - 1], r.inputIds[t]]);
      }
    }
    assert.deepEqual(seen, corpus);
    const b = first(train.batches({ batchSize: 3, shuffle: false }));
    assert.deepEqual(b.positionIds, [0, 1, 2].map((i) => train.example(i).positionIds));
    assert.deepEqual(b.documentIds, [0, 1, 2].map((i) => train.example(i).documentIds));
  });

  test('padded (SFT): documents cut to seqLen and counted; batches padded to the longest row or to seqLen', async () => {
    const f = join(tmp, 'sft.jsonl');
    const outputs = ['Yes.', 'A much longer answer that goes on and on and on for a while.', 'No.'];
    writeFileSync(f, outputs.map((output) => JSON.stringify({ instruction: 'Answer.', output })).join('\n'));
    const full = await loadDataset(f, { tokenizer: gpt2, seqLen: 1000, seed: 1 });
    const lengths = [0, 1, 2].map((i) => full.train.example(i).inputIds.length);
    const seqLen = lengths[1] - 5; // only the long answer is cut
    assert.ok(lengths[0] < seqLen && lengths[2] < seqLen);
    assert.equal(full.stats.packed, false);
    assert.equal(full.stats.truncated, 0);
    const { train, stats } = await loadDataset(f, { tokenizer: gpt2, seqLen });
    assert.equal(stats.truncated, 1);
    assert.deepEqual([0, 1, 2].map((i) => train.example(i).inputIds.length), lengths.map((n) => Math.min(n, seqLen)));
    const longest = first(train.batches({ batchSize: 3, shuffle: false }));
    assert.deepEqual(longest.inputIds.map((r) => r.length), [seqLen, seqLen, seqLen]);
    const short = first(train.batches({ batchSize: 2, shuffle: false, startStep: 1 }));
    assert.deepEqual(short.inputIds.map((r) => r.length), [lengths[2]]);
    const two = first((await loadDataset(f, { tokenizer: gpt2, seqLen, padding: 'longest' })).train.batches({ batchSize: 2, shuffle: false }));
    assert.equal(two.inputIds[0].length, seqLen);
    const sm = await loadDataset(f, { tokenizer: gpt2, seqLen: 1000, padding: 'max' });
    const fixed = first(sm.train.batches({ batchSize: 1, shuffle: false }));
    assert.equal(fixed.inputIds[0].length, 1000);
    assert.equal(fixed.attentionMask[0].reduce((a, b) => a + b, 0), lengths[0]);
    assert.equal(fixed.positionIds, undefined);
    const padId = 50256; // gpt2 has no pad token: eos pads
    assert.ok(fixed.inputIds[0].slice(lengths[0]).every((x) => x === padId));
    assert.ok(fixed.labels[0].slice(lengths[0]).every((x) => x === IGNORE_INDEX));
  });
});
