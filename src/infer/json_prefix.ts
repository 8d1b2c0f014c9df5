// An incremental recognizer of JSON text (RFC 8259), one character at a time: feed() says whether
// the text so far is still the beginning of some valid document, `complete` whether it is one.
// Constrained decoding (json_constraint.ts) asks it which next tokens keep the output valid.
// Runs of whitespace outside strings are capped, so a constrained model cannot pad forever.

type Mode =
  | 'value' | 'value_or_close' | 'key_or_close' | 'key' | 'colon' | 'after_value'
  | 'string' | 'escape' | 'unicode' | 'number' | 'literal' | 'done';

/** Number grammar positions: which ones may end the number (the last four). */
type NumberAt = 'minus' | 'dot' | 'exp' | 'exp_sign' | 'zero' | 'int' | 'frac' | 'exp_digits';
const NUMBER_ENDS: ReadonlySet<NumberAt> = new Set(['zero', 'int', 'frac', 'exp_digits']);

const WHITESPACE = ' \t\n\r';
const DIGIT = /[0-9]/;
const HEX = /[0-9a-fA-F]/;

export interface JsonPrefixOptions {
  /** the top-level value must be an object (OpenAI's json_object) */
  objectOnly?: boolean;
  /** longest run of whitespace between tokens (default 16) */
  maxWhitespace?: number;
}

export class JsonPrefix {
  /** open containers, innermost last: '{' or '[' */
  private stack = '';
  private mode: Mode = 'value';
  private inKey = false;
  private number: NumberAt = 'int';
  private literalLeft = '';
  private hexLeft = 0;
  private whitespace = 0;

  constructor(private readonly opts: JsonPrefixOptions = {}) {}

  clone(): JsonPrefix {
    return Object.assign(new JsonPrefix(this.opts), this);
  }

  /** Whether the text fed so far is a whole document (a top-level number counts once it could end). */
  get complete(): boolean {
    return this.mode === 'done' || (this.mode === 'number' && this.stack === '' && NUMBER_ENDS.has(this.number));
  }

  /** Feeds every character; false (and the state is then unusable) as soon as one is invalid. */
  feedText(text: string): boolean {
    for (const ch of text) if (!this.feed(ch)) return false;
    return true;
  }

  feed(ch: string): boolean {
    switch (this.mode) {
      case 'string': return this.inString(ch);
      case 'escape':
        if (ch === 'u') return (this.hexLeft = 4, this.mode = 'unicode', true);
        return '"\\/bfnrt'.includes(ch) && (this.mode = 'string', true);
      case 'unicode':
        if (!HEX.test(ch)) return false;
        if (--this.hexLeft === 0) this.mode = 'string';
        return true;
      case 'literal':
        if (ch !== this.literalLeft[0]) return false;
        this.literalLeft = this.literalLeft.slice(1);
        if (!this.literalLeft) this.endValue();
        return true;
      case 'number':
        if (this.inNumber(ch)) return true;
        if (!NUMBER_ENDS.has(this.number)) return false;
        this.endValue();
        return this.feed(ch); // the character after a number belongs to what follows it
      default: break;
    }
    if (WHITESPACE.includes(ch)) return ++this.whitespace <= (this.opts.maxWhitespace ?? 16);
    this.whitespace = 0;
    return this.mode !== 'done' && this.structural(ch);
  }

  private inString(ch: string): boolean {
    if (ch === '"') {
      if (this.inKey) this.mode = 'colon';
      else this.endValue();
      return true;
    }
    if (ch === '\\') return (this.mode = 'escape', true);
    return ch.charCodeAt(0) >= 0x20; // control characters must be escaped
  }

  private inNumber(ch: string): boolean {
    const next: Partial<Record<NumberAt, NumberAt>> = {};
    if (DIGIT.test(ch)) Object.assign(next, { minus: ch === '0' ? 'zero' : 'int', int: 'int', dot: 'frac', frac: 'frac', exp: 'exp_digits', exp_sign: 'exp_digits', exp_digits: 'exp_digits' });
    else if (ch === '.') Object.assign(next, { zero: 'dot', int: 'dot' });
    else if (ch === 'e' || ch === 'E') Object.assign(next, { zero: 'exp', int: 'exp', frac: 'exp' });
    else if (ch === '+' || ch === '-') Object.assign(next, { exp: 'exp_sign' });
    const to = next[this.number];
    if (to === undefined) return false;
    this.number = to;
    return true;
  }

  /** A value just ended: what follows is a separator, a close, or (at the top) the end. */
  private endValue(): void {
    this.mode = this.stack === '' ? 'done' : 'after_value';
  }

  private startValue(ch: string): boolean {
    if (this.opts.objectOnly && this.stack === '' && ch !== '{') return false;
    if (ch === '{' || ch === '[') {
      this.stack += ch;
      this.mode = ch === '{' ? 'key_or_close' : 'value_or_close';
      return true;
    }
    if (ch === '"') return (this.inKey = false, this.mode = 'string', true);
    if (ch === '-' || DIGIT.test(ch)) return (this.number = ch === '-' ? 'minus' : ch === '0' ? 'zero' : 'int', this.mode = 'number', true);
    const literal = ['true', 'false', 'null'].find((w) => w[0] === ch);
    if (!literal) return false;
    this.literalLeft = literal.slice(1);
    this.mode = 'literal';
    return true;
  }

  private close(ch: string): boolean {
    const open = this.stack.at(-1);
    if ((ch === '}' && open !== '{') || (ch === ']' && open !== '[')) return false;
    this.stack = this.stack.slice(0, -1);
    this.endValue();
    return true;
  }

  private structural(ch: string): boolean {
    switch (this.mode) {
      case 'value': return this.startValue(ch);
      case 'value_or_close': return ch === ']' ? this.close(ch) : this.startValue(ch);
      case 'key_or_close':
        if (ch === '}') return this.close(ch);
        return ch === '"' && (this.inKey = true, this.mode = 'string', true);
      case 'key': return ch === '"' && (this.inKey = true, this.mode = 'string', true);
      case 'colon': return ch === ':' && (this.mode = 'value', true);
      case 'after_value':
        if (ch === ',') return (this.mode = this.stack.at(-1) === '{' ? 'key' : 'value', true);
        return (ch === '}' || ch === ']') && this.close(ch);
      default: return false;
    }
  }
}
