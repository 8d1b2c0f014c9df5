// WER / CER against hand-counted edits: corpus rates are summed edits over summed reference length.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { charErrorRate, editDistance, normalizeTranscript, wordErrorRate } from '../../src/train/asr_metrics.js';

test('edit distance counts substitutions, deletions and insertions', () => {
  assert.equal(editDistance([...'kitten'], [...'sitting']), 3); // k->s, e->i, +g
  assert.equal(editDistance([], [1, 2]), 2);
  assert.equal(editDistance([1, 2, 3], [1, 2, 3]), 0);
});

test('WER and CER over a corpus, after normalisation', () => {
  assert.equal(normalizeTranscript('  Hello, World!  It\'s  me. '), "hello world it's me");
  // 'the cat sat' vs 'the cat sat down': 1 insertion; 'a dog' vs 'the dog': 1 substitution -> 2 / 5
  assert.equal(wordErrorRate(['The cat sat.', 'a dog'], ['the cat sat down', 'the dog']), 2 / 5);
  assert.equal(wordErrorRate(['one two three'], ['']), 1); // three deletions of three words
  // 'abc' vs 'abd': 1 of 3; 'xy' vs 'x': 1 of 2 -> 2 / 5
  assert.equal(charErrorRate(['abc', 'xy'], ['abd', 'x']), 2 / 5);
  assert.throws(() => wordErrorRate(['a'], []), /1 references but 0 hypotheses/);
  assert.throws(() => wordErrorRate([' '], ['a']), /references are empty/);
});
