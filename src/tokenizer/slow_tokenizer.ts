// The pipeline transformers' slow tokenizers share (PreTrainedTokenizer): added/special tokens
// registered over a model vocabulary, text split on them, the rest handed to the model's own
// _tokenize, special tokens wrapped around the ids, and decode that groups tokens back into text.
// Models plug in through SlowModel. Reference: transformers tokenization_utils.py (v4.44).
import { AddedTokenSplitter, splitOnAddedTokens } from './added_tokens.js';
import type { TokenizerEngine } from './engine.js';
import type { AddedTokenSpec } from './tokenizer_config.js';

/** What a concrete slow tokenizer (BERT WordPiece, Llama SentencePiece) provides. */
export interface SlowModel {
  /** base vocabulary size, without added tokens */
  readonly vocabSize: number;
  /** _tokenize: a text section that holds no added token -> tokens */
  tokenize(text: string): string[];
  /** _convert_token_to_id (unknown tokens map to the unk id) */
  tokenToId(token: string): number;
  /** whether token is in the base vocabulary */
  hasToken(token: string): boolean;
  /** _convert_id_to_token */
  idToToken(id: number): string | undefined;
  /** convert_tokens_to_string */
  tokensToString(tokens: string[]): string;
  /** overrides tokenize() around the added-token split (Llama's legacy=False prefix handling) */
  wrapTokenize?(text: string, inner: (text: string) => string[]): string[];
}

export interface SlowOptions {
  /** special tokens in transformers' order: bos, eos, unk, sep, pad, cls, mask, then additional */
  readonly specialTokens: readonly AddedTokenSpec[];
  /** additional_special_tokens (those beyond the base vocabulary decode like plain added tokens) */
  readonly additionalSpecialTokens: readonly string[];
  /** added_tokens_decoder from the config: id -> token */
  readonly addedTokens: ReadonlyMap<number, AddedTokenSpec>;
  /** build_inputs_with_special_tokens: the ids with special tokens around them */
  readonly buildInputs: (ids: number[]) => number[];
  readonly cleanUpTokenizationSpaces: boolean;
  /** BERT's do_lower_case: lower-case everything but special tokens before splitting */
  readonly lowerCase: boolean;
}

/** transformers' clean_up_tokenization: removes spaces before punctuation and contractions. */
export function cleanUpTokenization(s: string): string {
  return s.replaceAll(' .', '.').replaceAll(' ?', '?').replaceAll(' !', '!').replaceAll(' ,', ',')
    .replaceAll(" ' ", "'").replaceAll(" n't", "n't").replaceAll(" 'm", "'m").replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve").replaceAll(" 're", "'re");
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * A slow (pure) tokenizer over a SlowModel.
 * @example
 * const tok = new SlowTokenizer(wordpiece, { specialTokens, additionalSpecialTokens: [], addedTokens, buildInputs, cleanUpTokenizationSpaces: true, lowerCase: true });
 * tok.encode('Hello world', true) // { ids: [101, 7592, 2088, 102], tokens: [...] }
 */
export class SlowTokenizer implements TokenizerEngine {
  /** _added_tokens_decoder / _added_tokens_encoder */
  readonly addedById = new Map<number, AddedTokenSpec>();
  readonly addedByContent = new Map<string, AddedTokenSpec>();
  private readonly addedIds = new Map<string, number>();
  readonly allSpecialTokens: string[];
  readonly allSpecialIds: Set<number>;
  private readonly splitter: AddedTokenSplitter;
  private readonly lowerPattern: RegExp | null;

  constructor(readonly model: SlowModel, private readonly opts: SlowOptions) {
    for (const [id, t] of opts.addedTokens) this.register(id, t);
    // PreTrainedTokenizer.__init__: special tokens not yet added get the vocab id, or a new one.
    let next = Math.max(model.vocabSize, ...[...this.addedById.keys()].map((i) => i + 1));
    for (const t of opts.specialTokens) {
      if (this.addedIds.has(t.content)) continue;
      const id = model.hasToken(t.content) ? model.tokenToId(t.content) : next++;
      this.register(id, t);
    }
    this.allSpecialTokens = [...new Set(opts.specialTokens.map((t) => t.content))];
    this.allSpecialIds = new Set(this.allSpecialTokens.map((t) => this.idOf(t)));
    this.splitter = new AddedTokenSplitter(this.addedIds.keys());
    this.lowerPattern = opts.lowerCase ? this.lowerCasePattern() : null;
  }

  private register(id: number, t: AddedTokenSpec): void {
    this.addedById.set(id, t);
    this.addedByContent.set(t.content, t);
    this.addedIds.set(t.content, id);
  }

  /** Special tokens and non-special normalized added tokens survive lower-casing (tokenize()). */
  private lowerCasePattern(): RegExp | null {
    const keep = [...this.allSpecialTokens, ...[...this.addedById.values()].filter((t) => !t.special && t.normalized).map((t) => t.content)];
    return keep.length > 0 ? new RegExp(keep.map(escapeRegExp).join('|'), 'g') : null;
  }

  /** Python's per-character str.lower() on every character outside the kept tokens. */
  private lower(text: string): string {
    const lowerChars = (s: string): string => Array.from(s, (c) => c.toLowerCase()).join('');
    if (this.lowerPattern === null) return lowerChars(text);
    let out = '';
    let last = 0;
    for (const m of text.matchAll(this.lowerPattern)) {
      out += lowerChars(text.slice(last, m.index)) + m[0];
      last = m.index! + m[0].length;
    }
    return out + lowerChars(text.slice(last));
  }

  /** tokenize(): tokens without special tokens added around them. */
  tokenize(text: string): string[] {
    const inner = (t: string): string[] => {
      const prepared = this.opts.lowerCase ? this.lower(t) : t;
      return splitOnAddedTokens(prepared, this.splitter, this.addedByContent)
        .flatMap((s) => (s.added ? [s.text] : this.model.tokenize(s.text)));
    };
    return this.model.wrapTokenize ? this.model.wrapTokenize(text, inner) : inner(text);
  }

  /** The id of a token of the vocabulary (added or base); undefined for anything else. */
  tokenToId(token: string): number | undefined {
    return this.addedIds.get(token) ?? (this.model.hasToken(token) ? this.model.tokenToId(token) : undefined);
  }

  /** convert_tokens_to_ids: unknown tokens become the unk id, as the model decides. */
  idOf(token: string): number {
    return this.addedIds.get(token) ?? this.model.tokenToId(token);
  }

  idToToken(id: number): string | undefined {
    return this.addedById.get(id)?.content ?? this.model.idToToken(id);
  }

  encode(text: string, addSpecialTokens: boolean): { ids: number[]; tokens: string[] } {
    const tokens = this.tokenize(text);
    const ids = tokens.map((t) => this.idOf(t));
    if (!addSpecialTokens) return { ids, tokens };
    const full = this.opts.buildInputs(ids);
    return { ids: full, tokens: full.map((id) => this.idToToken(id) ?? '') };
  }

  /**
   * _decode: "legacy" added tokens (not special, or additional special ones beyond the base
   * vocabulary) are kept apart from model tokens, and the pieces joined by spaces.
   */
  decode(ids: readonly number[], skipSpecialTokens: boolean): string {
    const legacyAdded = new Set([
      ...[...this.addedIds.keys()].filter((t) => !this.allSpecialTokens.includes(t)),
      ...this.opts.additionalSpecialTokens.filter((t) => this.idOf(t) >= this.model.vocabSize),
    ]);
    const subTexts: string[] = [];
    let current: string[] = [];
    for (const id of ids) {
      if (skipSpecialTokens && this.allSpecialIds.has(id)) continue;
      const token = this.idToToken(id);
      if (token === undefined) throw new Error(`decode: token id ${id} is outside the vocabulary (size ${this.length})`);
      if (legacyAdded.has(token)) {
        if (current.length > 0) {
          const s = this.model.tokensToString(current);
          if (s.length > 0) subTexts.push(s);
          current = [];
        }
        subTexts.push(token);
      } else {
        current.push(token);
      }
    }
    if (current.length > 0) subTexts.push(this.model.tokensToString(current));
    const text = subTexts.join(' ');
    return this.opts.cleanUpTokenizationSpaces ? cleanUpTokenization(text) : text;
  }

  get vocabSize(): number { return this.model.vocabSize; }

  get addedTokens(): ReadonlyMap<number, AddedTokenSpec> { return this.addedById; }

  /** len(tokenizer): base vocabulary plus added tokens outside it. */
  get length(): number {
    let extra = 0;
    for (const id of this.addedById.keys()) if (id >= this.model.vocabSize) extra++;
    return this.model.vocabSize + extra;
  }
}
