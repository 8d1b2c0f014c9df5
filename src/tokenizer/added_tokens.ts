// Splitting text on added tokens before the model sees it: leftmost-longest matching (what the
// Trie in transformers' tokenization_utils.py and the Rust AddedVocabulary do), then each
// token's lstrip / rstrip / single_word rules applied to its neighbours.
// Reference: transformers tokenization_utils.py Trie.split and PreTrainedTokenizer.tokenize.
import type { AddedTokenSpec } from './tokenizer_config.js';

/** A piece of the input: plain text for the model, or an added token kept whole. */
export type Section = { readonly text: string; readonly added: boolean };

/**
 * Finds added tokens in text, leftmost first and longest at each position.
 * @example
 * new AddedTokenSplitter(['<s>', '</s>']).split('a<s>b') // ['a', '<s>', 'b']
 */
export class AddedTokenSplitter {
  /** first UTF-16 unit -> tokens starting with it, longest first */
  private readonly byFirst = new Map<string, string[]>();

  constructor(tokens: Iterable<string>) {
    for (const t of tokens) {
      if (t === '') continue;
      const list = this.byFirst.get(t[0]) ?? [];
      if (!list.includes(t)) list.push(t);
      this.byFirst.set(t[0], list);
    }
    for (const list of this.byFirst.values()) list.sort((a, b) => b.length - a.length);
  }

  split(text: string): string[] {
    const out: string[] = [];
    let plainStart = 0;
    let i = 0;
    while (i < text.length) {
      const hit = this.byFirst.get(text[i])?.find((t) => text.startsWith(t, i));
      if (hit === undefined) {
        i++;
        continue;
      }
      if (i > plainStart) out.push(text.slice(plainStart, i));
      out.push(hit);
      i += hit.length;
      plainStart = i;
    }
    if (plainStart < text.length) out.push(text.slice(plainStart));
    return out;
  }
}

// Python's str.isspace (and so .strip()) set, which JS \s nearly matches; \x1c-\x1f and \x85 added.
const PY_SPACE = '[\\s\\x1c-\\x1f\\x85]';
const LEFT_WS = new RegExp(`^${PY_SPACE}+`, 'u');
const RIGHT_WS = new RegExp(`${PY_SPACE}+$`, 'u');

/**
 * Splits text into sections: added tokens (kept whole) and the text between them, with the
 * added tokens' strip rules applied exactly as transformers' slow tokenize() applies them.
 * @example
 * splitOnAddedTokens('a <mask> b', splitter, tokens) // mask with lstrip: [{'a'}, {'<mask>'}, {' b'}]
 */
export function splitOnAddedTokens(text: string, splitter: AddedTokenSplitter, tokens: ReadonlyMap<string, AddedTokenSpec>): Section[] {
  const parts = splitter.split(text);
  for (let i = 0; i < parts.length; i++) {
    const spec = tokens.get(parts[i]);
    if (spec === undefined) continue;
    const left = i > 0 ? parts[i - 1] : '';
    const right = i < parts.length - 1 ? parts[i + 1] : '';
    if (spec.rstrip && right) parts[i + 1] = right.replace(LEFT_WS, '');
    if (spec.lstrip && left) parts[i - 1] = left.replace(RIGHT_WS, '');
    // single_word: a token glued to a word is not the token (it merges back into its neighbour).
    if (spec.singleWord && left && !left.endsWith(' ')) {
      parts[i - 1] += parts[i];
      parts[i] = '';
    } else if (spec.singleWord && right && !right.startsWith(' ')) {
      parts[i + 1] = parts[i] + parts[i + 1];
      parts[i] = '';
    }
  }
  return parts.filter((p) => p !== '').map((p) => ({ text: p, added: tokens.has(p) }));
}
