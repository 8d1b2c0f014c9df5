// One completion choice as tokens arrive, with a character-per-token decoder: the text is cut
// before the first stop string, streaming holds back exactly the tail that could still become a
// stop string (or an unfinished UTF-8 character), and the finish reasons follow OpenAI's.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Choice } from '../../src/serve/choice.js';

// token id -> one character: 0..25 'a'..'z', 26 the replacement character (an unfinished byte sequence)
const decode = (ids: number[]): string => ids.map((i) => (i === 26 ? '\uFFFD' : String.fromCharCode(97 + i))).join('');
const ids = (s: string): number[] => [...s].map((ch) => ch.charCodeAt(0) - 97);
const EOS = 99;

function stream(c: Choice, tokens: number[]): string[] {
  return tokens.map((t) => {
    c.push(t, null);
    return c.takeDelta().text;
  });
}

describe('Choice', () => {
  test('a stop string spanning tokens: its prefix is held back, then the text ends before it', () => {
    const c = new Choice(0, decode, ['cde'], 100, [EOS]);
    // after 'ab' nothing can start 'cde'; 'c' and 'cd' might, so they wait; 'cde' stops
    assert.deepEqual(stream(c, ids('abcde')), ['a', 'b', '', '', '']);
    assert.equal(c.text, 'ab');
    assert.equal(c.finishReason, 'stop');
  });

  test('a held-back prefix that does not become the stop string is released', () => {
    const c = new Choice(0, decode, ['cde'], 100, [EOS]);
    assert.deepEqual(stream(c, ids('abcdx')), ['a', 'b', '', '', 'cdx']);
    assert.equal(c.finishReason, null);
  });

  test('the earliest of several stop strings wins', () => {
    const c = new Choice(0, decode, ['zz', 'bc'], 100, [EOS]);
    stream(c, ids('abczz'));
    assert.equal(c.text, 'a');
  });

  test('an unfinished character waits for the next token', () => {
    const c = new Choice(0, decode, [], 100, [EOS]);
    assert.deepEqual(stream(c, [0, 26, 1]), ['a', '', '\uFFFDb']);
  });

  test('eos ends with stop and adds no text; max tokens ends with length; nothing is added after the end', () => {
    const e = new Choice(0, decode, [], 100, [EOS]);
    stream(e, [0, EOS, 1]);
    assert.deepEqual([e.text, e.ids, e.finishReason], ['a', [0], 'stop']);
    const l = new Choice(0, decode, [], 2, [EOS]);
    stream(l, [0, 1, 2]);
    assert.deepEqual([l.text, l.finishReason], ['ab', 'length']);
  });

  test('logprobs are streamed once each, with the text they belong to', () => {
    const c = new Choice(0, decode, [], 10, [EOS]);
    c.push(0, { logprob: -1, top: [] });
    assert.deepEqual(c.takeDelta().logprobs, [{ id: 0, logprob: -1, top: [] }]);
    assert.deepEqual(c.takeDelta(), { text: '', logprobs: [] });
  });
});
