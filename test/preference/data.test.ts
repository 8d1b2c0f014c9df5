// Preference data: every record format becomes (prompt, chosen, rejected) with loss only on the
// completion (byte-level tokenizer, so expected ids are the bytes themselves); chat data goes
// through the chat template with only the final assistant turn scored; HH-RLHF transcripts split
// at the last assistant turn; bad records name file:line; batches are seeded and resumable.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { DataError } from '../../src/data/errors.js';
import { loadTokenizer } from '../../src/tokenizer/index.js';
import { completionEncoder } from '../../src/preference/encode.js';
import { loadPreferenceData } from '../../src/preference/load.js';
import { pairRecord, unpairedRecord } from '../../src/preference/records.js';
import { PAD, tinyPreferenceDir } from './tiny_preference.js';

const dir = tinyPreferenceDir(20);
const where = { file: 'p.jsonl', line: 3 };
const rec = (value: Record<string, unknown>) => ({ value, where });
const bytes = (s: string): number[] => [...Buffer.from(s)];
const EOS = 258; // <|im_end|>
const IM_START = 257;

test('text pairs: prompt tokens take no loss, the completion and eos do', async () => {
  const enc = completionEncoder({ tokenizer: await loadTokenizer(dir) });
  const [chosen, rejected] = enc(pairRecord(rec({ prompt: 'ab:', chosen: ' ei', rejected: ' xyz' })), where);
  assert.deepEqual(chosen.inputIds, [...bytes('ab: ei'), EOS]);
  assert.deepEqual(chosen.labels, [-100, -100, -100, ...bytes(' ei'), EOS]);
  assert.deepEqual(rejected.labels, [-100, -100, -100, ...bytes(' xyz'), EOS]);
});

test('conversational pairs: chat template applied, only the final assistant turn scored (explicit and implicit prompt)', async () => {
  const enc = completionEncoder({ tokenizer: await loadTokenizer(dir) });
  const turn = (role: string, content: string): number[] => [IM_START, ...bytes(`${role}\n${content}`), EOS, ...bytes('\n')];
  const explicit = pairRecord(rec({ prompt: [{ role: 'user', content: 'hi' }], chosen: [{ role: 'assistant', content: 'yo' }], rejected: [{ role: 'assistant', content: 'no' }] }));
  const [c] = enc(explicit, where);
  const promptIds = [...turn('user', 'hi'), IM_START, ...bytes('assistant\n')];
  assert.deepEqual(c.inputIds, [...promptIds, ...bytes('yo'), EOS, ...bytes('\n')]);
  assert.deepEqual(c.labels, [...promptIds.map(() => -100), ...bytes('yo'), EOS, -100], 'the reply and its <|im_end|>, not the template newline');
  const history = [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'first' }, { role: 'user', content: 'b' }];
  const implicit = pairRecord(rec({ chosen: [...history, { role: 'assistant', content: 'ok' }], rejected: [...history, { role: 'assistant', content: 'bad' }] }));
  assert.equal(implicit.kind, 'chat');
  const [ic, ir] = enc(implicit, where);
  const scored = (ex: { inputIds: number[]; labels: number[] }) => ex.labels.filter((l) => l !== -100);
  assert.deepEqual(scored(ic), [...bytes('ok'), EOS], 'the earlier assistant turn belongs to the prompt');
  assert.deepEqual(scored(ir), [...bytes('bad'), EOS]);
  assert.deepEqual(ic.inputIds.slice(0, ic.labels.indexOf(bytes('o')[0])), ir.inputIds.slice(0, ir.labels.indexOf(bytes('b')[0])), 'one shared prompt');
});

test('HH-RLHF transcripts split at the last "\\n\\nAssistant:"; KTO records', () => {
  const hh = pairRecord(rec({ chosen: '\n\nHuman: hi\n\nAssistant: hey\n\nHuman: q?\n\nAssistant: yes', rejected: '\n\nHuman: hi\n\nAssistant: hey\n\nHuman: q?\n\nAssistant: no' }));
  assert.deepEqual(hh, { kind: 'text', prompt: '\n\nHuman: hi\n\nAssistant: hey\n\nHuman: q?\n\nAssistant:', completions: [' yes', ' no'] });
  assert.deepEqual(unpairedRecord(rec({ prompt: 'q', completion: ' a', label: false })), { kind: 'text', prompt: 'q', completions: [' a'], desirable: false });
  const chat = unpairedRecord(rec({ prompt: [{ role: 'user', content: 'q' }], completion: [{ role: 'assistant', content: 'a' }], label: true }));
  assert.equal(chat.kind, 'chat');
  assert.equal(chat.desirable, true);
});

test('malformed records are DataErrors naming file:line and the field', () => {
  const bad = (value: Record<string, unknown>, msg: RegExp): void => {
    assert.throws(() => pairRecord(rec(value)), (e: unknown) => e instanceof DataError && /^p\.jsonl:3: /.test(e.message) && msg.test(e.message));
  };
  bad({ prompt: 'x', chosen: 'y' }, /needs "chosen" and "rejected".*"prompt", "chosen"/);
  bad({ chosen: '\n\nHuman: a\n\nAssistant: y', rejected: '\n\nHuman: b\n\nAssistant: n' }, /differ before their last/);
  bad({ chosen: 'no turns', rejected: 'x' }, /no "\\n\\nAssistant:" turn/);
  bad({ chosen: [{ role: 'user', content: 'a' }], rejected: [{ role: 'user', content: 'a' }] }, /"chosen" must end with an assistant message/);
  bad({ prompt: 'p', chosen: [{ role: 'assistant', content: 1 }], rejected: [{ role: 'assistant', content: 'n' }] }, /"chosen\[0\]\.content"/);
  bad({ chosen: [{ role: 'user', content: 'a' }, { role: 'assistant', content: 'y' }], rejected: [{ role: 'user', content: 'b' }, { role: 'assistant', content: 'n' }] }, /differ before their last message/);
  assert.throws(() => unpairedRecord(rec({ prompt: 'q', completion: 'a', label: 'yes' })), /p\.jsonl:3: field "label" must be true/);
});

test('loadPreferenceData: seeded disjoint eval split, resumable batches, prompt too long for seqLen names its line', async () => {
  const tokenizer = await loadTokenizer(dir);
  const opts = { tokenizer, seqLen: 24, padId: PAD, evalFraction: 0.25, seed: 5 };
  const a = await loadPreferenceData(join(dir, 'pairs.jsonl'), opts);
  const b = await loadPreferenceData(join(dir, 'pairs.jsonl'), opts);
  assert.equal(a.train.length + a.eval!.length, 20);
  assert.equal(a.eval!.length, 5);
  assert.deepEqual(a.eval!.examples, b.eval!.examples, 'the split depends only on the seed');
  const key = (e: { chosen: { inputIds: number[] } }) => e.chosen.inputIds.join(',');
  const evalKeys = new Set(a.eval!.examples.map(key));
  assert.ok(a.train.examples.every((e) => !evalKeys.has(key(e))), 'train and eval are disjoint');
  const all = [...a.train.batches({ batchSize: 4, epoch: 2 })];
  const tail = [...a.train.batches({ batchSize: 4, epoch: 2, startStep: 2 })];
  assert.deepEqual(tail, all.slice(2), 'a resume from step 2 yields the rest of the epoch');
  const first = all[0];
  assert.equal(first.rows.inputIds.length, 2 * first.pairs, 'chosen rows then rejected rows');
  const long = join(dir, 'long.jsonl');
  writeFileSync(long, `${JSON.stringify({ prompt: 'ok:', chosen: ' a', rejected: ' b' })}\n${JSON.stringify({ prompt: 'x'.repeat(40), chosen: ' a', rejected: ' b' })}\n`);
  await assert.rejects(loadPreferenceData(long, opts), /long\.jsonl:2: the prompt fills seqLen 24/);
  const skipped = await loadPreferenceData(long, { ...opts, evalFraction: 0, skipBadLines: true });
  assert.equal(skipped.badLines, 1);
  assert.equal(skipped.train.length, 1);
});
