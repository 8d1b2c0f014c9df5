// Constrained JSON-object decoding on a toy vocabulary with random scores that favour invalid
// continuations: whatever the scores, the picked text is a JSON object (JSON.parse is the oracle)
// and eos comes only once it is complete; token pieces are read after a prefix token.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { JsonObjectConstraint, tokenPieces } from '../../src/infer/json_constraint.js';
import { argmax } from '../../src/infer/sampling.js';
import { seeded } from '../helpers.js';

// id -> text; the last id is eos, id 14 decodes to nothing (a special token), 15 to half a character
const VOCAB = ['{', '}', '[', ']', '"', 'ab', ':', ',', '1', ' ', 'tru', 'e', 'null', '}}', '', '\uFFFD'];
const EOS = VOCAB.length;
const decode = (ids: number[]): string => ids.map((i) => VOCAB[i] ?? '').join('');

describe('JSON-object constrained decoding', () => {
  test('token pieces: what each token adds after a prefix; special and partial tokens are null', () => {
    const pieces = tokenPieces(decode, EOS + 1, [5]);
    assert.deepEqual(pieces.slice(0, 4), ['{', '}', '[', ']']);
    assert.equal(pieces[14], null);
    assert.equal(pieces[15], null);
    assert.equal(pieces[EOS], null);
    // SentencePiece-style decoding drops a leading space at the start only: the prefix keeps it
    const sp = (ids: number[]): string => ids.map((i) => (i === 0 ? '▁x' : 'a')).join('').replaceAll('▁', ' ').replace(/^ /, '');
    assert.deepEqual(tokenPieces(sp, 1, [1]), [' x']);
  });

  test('greedy picks over random scores (closers favoured so it ends) always give a JSON object', () => {
    const pieces = tokenPieces(decode, EOS + 1, [5]);
    for (let seed = 1; seed <= 30; seed++) {
      const c = new JsonObjectConstraint(pieces, [EOS]);
      const r = seeded(400 * (EOS + 1), seed, -3, 3);
      const out: number[] = [];
      for (let step = 0; step < 400; step++) {
        const s = Float32Array.from(r.subarray(step * (EOS + 1), (step + 1) * (EOS + 1)));
        for (const close of [1, 3, 4]) s[close] += 1.5;
        s[EOS] += 10; // eos is the model's favourite: the constraint must hold it back until the end
        c.process(0, s, out);
        const t = argmax(s);
        assert.notEqual(s[t], -Infinity, `seed ${seed}: the constraint left a token`);
        if (t === EOS) break;
        out.push(t);
      }
      const text = decode(out);
      const value: unknown = JSON.parse(text); // throws (fails the test) when the text is not JSON
      assert.ok(typeof value === 'object' && value !== null && !Array.isArray(value), `seed ${seed}: ${text} is an object`);
    }
  });

  test('rows keep separate states', () => {
    const c = new JsonObjectConstraint(tokenPieces(decode, EOS + 1, [5]), [EOS]);
    const s0 = new Float32Array(EOS + 1);
    const s1 = new Float32Array(EOS + 1);
    c.process(0, s0, []); // row 0 at the start: only '{' (and whitespace)
    c.process(1, s1, [0, 4, 5, 4, 6, 8, 1]); // row 1 holds {"ab":1}: only eos and whitespace
    assert.deepEqual([...s0].map((x, id) => (x === -Infinity ? null : id)).filter((x) => x !== null), [0, 9]);
    assert.deepEqual([...s1].map((x, id) => (x === -Infinity ? null : id)).filter((x) => x !== null), [9, EOS]);
  });
});
