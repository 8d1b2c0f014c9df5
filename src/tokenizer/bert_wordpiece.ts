// BERT's slow tokenizer over vocab.txt: BasicTokenizer (control-character cleanup, CJK characters
// split apart, NFC, lower-casing with accent stripping, punctuation split) then greedy
// longest-match-first WordPiece with "##" continuations. Character classes follow Python's
// unicodedata as transformers uses it. Reference: transformers models/bert/tokenization_bert.py.
import type { SlowModel } from './slow_tokenizer.js';

const isWhitespace = (c: string): boolean => c === ' ' || c === '\t' || c === '\n' || c === '\r' || /^\p{Zs}$/u.test(c);
const isControl = (c: string): boolean => c !== '\t' && c !== '\n' && c !== '\r' && /^\p{C}$/u.test(c);

/** ASCII non-alphanumerics count as punctuation too ("^", "$", "`" are not Unicode P*). */
function isPunctuation(c: string): boolean {
  const cp = c.codePointAt(0)!;
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126)) return true;
  return /^\p{P}$/u.test(c);
}

/** The CJK Unified Ideographs blocks (not Hangul, Hiragana or Katakana, which are space-separated). */
function isChineseChar(cp: number): boolean {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) || (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

/** Python's str.split() with no argument (after cleanup only JS \s whitespace can remain). */
const whitespaceSplit = (s: string): string[] => s.split(/\s+/u).filter((t) => t !== '');

export interface BasicTokenizerOptions {
  readonly doLowerCase: boolean;
  /** null: strip accents exactly when lower-casing */
  readonly stripAccents: boolean | null;
  readonly tokenizeChineseChars: boolean;
  /** tokens that pass through unsplit and unchanged (the special tokens) */
  readonly neverSplit: ReadonlySet<string>;
}

/**
 * BasicTokenizer.tokenize: words and punctuation marks.
 * @example
 * basicTokenize('Héllo, World!', { doLowerCase: true, stripAccents: null, tokenizeChineseChars: true, neverSplit: new Set() })
 * // ['hello', ',', 'world', '!']
 */
export function basicTokenize(text: string, o: BasicTokenizerOptions): string[] {
  let cleaned = '';
  for (const c of text) {
    const cp = c.codePointAt(0)!;
    if (cp === 0 || cp === 0xfffd || isControl(c)) continue;
    cleaned += isWhitespace(c) ? ' ' : c;
  }
  if (o.tokenizeChineseChars) {
    cleaned = Array.from(cleaned, (c) => (isChineseChar(c.codePointAt(0)!) ? ` ${c} ` : c)).join('');
  }
  const out: string[] = [];
  for (let token of whitespaceSplit(cleaned.normalize('NFC'))) {
    if (!o.neverSplit.has(token)) {
      if (o.doLowerCase) {
        token = token.toLowerCase();
        if (o.stripAccents !== false) token = stripAccents(token);
      } else if (o.stripAccents) {
        token = stripAccents(token);
      }
    }
    out.push(...splitOnPunctuation(token, o.neverSplit));
  }
  return whitespaceSplit(out.join(' '));
}

function stripAccents(s: string): string {
  return s.normalize('NFD').replace(/\p{Mn}/gu, '');
}

function splitOnPunctuation(token: string, neverSplit: ReadonlySet<string>): string[] {
  if (neverSplit.has(token)) return [token];
  const out: string[] = [];
  let startNew = true;
  for (const c of token) {
    if (isPunctuation(c)) {
      out.push(c);
      startNew = true;
    } else {
      if (startNew) out.push('');
      startNew = false;
      out[out.length - 1] += c;
    }
  }
  return out;
}

/**
 * Greedy longest-match-first WordPiece; a word with any unmatchable rest becomes the unk token.
 * @example
 * wordPiece('unaffable', vocab, '[UNK]') // ['una', '##ffa', '##ble']
 */
export function wordPiece(word: string, vocab: ReadonlyMap<string, number>, unk: string, maxChars = 100): string[] {
  const chars = Array.from(word);
  if (chars.length > maxChars) return [unk];
  const out: string[] = [];
  let start = 0;
  while (start < chars.length) {
    let end = chars.length;
    let found: string | null = null;
    while (start < end) {
      const sub = (start > 0 ? '##' : '') + chars.slice(start, end).join('');
      if (vocab.has(sub)) {
        found = sub;
        break;
      }
      end--;
    }
    if (found === null) return [unk];
    out.push(found);
    start = end;
  }
  return out;
}

/**
 * Reads vocab.txt (one token per line; universal newlines, as Python's text mode reads it).
 * @example
 * parseVocabTxt('[PAD]\n[UNK]\n').get('[UNK]') // 1
 */
export function parseVocabTxt(text: string): Map<string, number> {
  const lines = text.split(/\r\n|\r|\n/);
  if (lines[lines.length - 1] === '') lines.pop();
  const vocab = new Map<string, number>();
  lines.forEach((t, i) => vocab.set(t, i));
  return vocab;
}

/** BertTokenizer's _tokenize / vocabulary side, plugged into SlowTokenizer. */
export class BertWordPiece implements SlowModel {
  private readonly idsToTokens = new Map<number, string>();

  constructor(private readonly vocab: ReadonlyMap<string, number>, private readonly unkToken: string, private readonly basic: BasicTokenizerOptions | null) {
    for (const [t, id] of vocab) this.idsToTokens.set(id, t);
  }

  get vocabSize(): number { return this.vocab.size; }

  tokenize(text: string): string[] {
    if (this.basic === null) return whitespaceSplit(text).flatMap((w) => wordPiece(w, this.vocab, this.unkToken));
    return basicTokenize(text, this.basic).flatMap((w) => wordPiece(w, this.vocab, this.unkToken));
  }

  tokenToId(token: string): number {
    const id = this.vocab.get(token) ?? this.vocab.get(this.unkToken);
    if (id === undefined) throw new Error(`vocab.txt: neither ${JSON.stringify(token)} nor the unk token ${JSON.stringify(this.unkToken)} is in the vocabulary`);
    return id;
  }

  hasToken(token: string): boolean { return this.vocab.has(token); }

  idToToken(id: number): string | undefined { return this.idsToTokens.get(id) ?? this.unkToken; }

  tokensToString(tokens: string[]): string {
    return tokens.join(' ').replaceAll(' ##', '').trim();
  }
}
