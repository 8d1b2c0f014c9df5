// The JSON prefix recognizer against JSON.parse as the oracle: every prefix of a valid document
// is accepted and only the whole one is complete; on random strings over JSON's alphabet,
// "accepted and complete" holds exactly when JSON.parse succeeds.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { JsonPrefix } from '../../src/infer/json_prefix.js';
import { seeded } from '../helpers.js';

const parses = (s: string): boolean => {
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
};

function run(s: string, objectOnly = false): { ok: boolean; complete: boolean } {
  const p = new JsonPrefix({ objectOnly, maxWhitespace: 1000 });
  const ok = p.feedText(s);
  return { ok, complete: ok && p.complete };
}

const VALID = [
  '{}', '[]', '{"a": 1}', '{"a":[1,2.5,-0.5e+10,true,false,null,"x\\"y\\u00e9"],"b":{"c":{}}}', '[[[]], {"k": "v"}]',
  '0', '-12.75E-3', '"\\n\\t\\/"', 'true', ' \n{ "spaced" : [ 1 , 2 ] } ', '{"é": "ünï"}',
];
const INVALID = ['{,}', '[1,]', '{"a" 1}', '{"a":}', '01', '1.', '-', '.5', 'tru', '"\u0001"', '{"a":1}}', '[1 2]', '{1: 2}', '"\\x"', '1e', '[}', '{]'];

describe('JsonPrefix', () => {
  test('every prefix of a valid document is accepted; the whole is complete', () => {
    for (const doc of VALID) {
      assert.ok(parses(doc), doc);
      const t = doc.trimEnd();
      for (let i = 0; i < t.length; i++) assert.equal(run(t.slice(0, i)).ok, true, `prefix ${JSON.stringify(t.slice(0, i))} of ${doc}`);
      assert.deepEqual(run(t), { ok: true, complete: true }, doc);
    }
  });

  test('invalid documents are rejected or left incomplete', () => {
    for (const doc of INVALID) {
      assert.ok(!parses(doc), doc);
      assert.equal(run(doc).complete, false, doc);
    }
  });

  test('random strings over the JSON alphabet: complete exactly when JSON.parse accepts', () => {
    const alphabet = '{}[]:,"0123-.eE+ tfrunlsa\\';
    const r = seeded(4000 * 8, 5, 0, 1);
    let accepted = 0;
    for (let n = 0; n < 4000; n++) {
      const len = 1 + Math.floor(r[n * 8] * 7);
      const s = Array.from({ length: len }, (_, i) => alphabet[Math.floor(r[n * 8 + i + 1] * alphabet.length)]).join('');
      const got = run(s);
      assert.equal(got.complete, parses(s), JSON.stringify(s));
      if (got.complete) accepted++;
    }
    assert.ok(accepted > 50, `enough valid samples (${accepted}) to mean something`);
  });

  test('objectOnly refuses any other top-level value; whitespace runs are capped', () => {
    assert.equal(run('[1]', true).ok, false);
    assert.equal(run('"a"', true).ok, false);
    assert.deepEqual(run(' {"a": [1]}', true), { ok: true, complete: true });
    const p = new JsonPrefix({ maxWhitespace: 3 });
    assert.equal(p.feedText('{   '), true);
    assert.equal(p.feed(' '), false);
    assert.equal(new JsonPrefix({ maxWhitespace: 3 }).feedText('{"a   b"'), true, 'inside strings spaces are content');
  });
});
