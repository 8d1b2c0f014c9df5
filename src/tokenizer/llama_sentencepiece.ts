// transformers' slow LlamaTokenizer over tokenizer.model: the `legacy` switch (False: no dummy
// prefix inside SentencePiece, one ▁ added in front of the whole text instead, so text after a
// special token gets no stray ▁), add_prefix_space, and the decode that keeps special tokens out
// of SentencePiece. Reference: transformers models/llama/tokenization_llama.py (v4.44), PR #24565.
import { SPACE, SentencePieceBpe } from './sentencepiece_bpe.js';
import type { SentencePieceModel } from './sentencepiece_model.js';
import type { SlowModel } from './slow_tokenizer.js';

export interface LlamaSpOptions {
  /** legacy=True: SentencePiece's own dummy prefix on every section (the old behaviour) */
  readonly legacy: boolean;
  readonly addPrefixSpace: boolean;
  readonly unkToken: string;
  /** all_special_tokens (bos, eos, unk, ...) */
  readonly specialTokens: ReadonlySet<string>;
}

/**
 * The SentencePiece side of LlamaTokenizer, plugged into SlowTokenizer.
 * @example
 * const m = new LlamaSentencePiece(parseSentencePieceModel(bytes, file), { legacy: false, addPrefixSpace: true, unkToken: '<unk>', specialTokens });
 * m.wrapTokenize('Hello', (t) => m.tokenize(t)) // ['▁Hello']
 */
export class LlamaSentencePiece implements SlowModel {
  readonly sp: SentencePieceBpe;
  private readonly unkTokenLength: number;

  constructor(model: SentencePieceModel, private readonly opts: LlamaSpOptions) {
    // legacy=False reloads the model with normalizer_spec.add_dummy_prefix = False.
    this.sp = new SentencePieceBpe(model, opts.legacy ? model.addDummyPrefix : false);
    this.unkTokenLength = this.sp.encodeAsPieces(opts.unkToken).length;
  }

  get vocabSize(): number { return this.sp.size; }

  /** tokenize(): with legacy=False, one ▁ for the whole text, dropped again before a leading special token. */
  wrapTokenize(text: string, inner: (text: string) => string[]): string[] {
    if (this.opts.legacy || text.length === 0) return inner(text);
    let t = text.replaceAll(SPACE, ' ');
    if (this.opts.addPrefixSpace) t = SPACE + t;
    const tokens = inner(t);
    if (tokens.length > 1 && tokens[0] === SPACE && this.opts.specialTokens.has(tokens[1])) return tokens.slice(1);
    return tokens;
  }

  /**
   * _tokenize(): without the dummy prefix SentencePiece would treat a leading ▁ as an ordinary
   * character, so (legacy=False) the section is encoded behind the unk token, whose pieces are cut off.
   */
  tokenize(text: string): string[] {
    if (this.opts.legacy || !(text.startsWith(SPACE) || text.startsWith(' '))) return this.sp.encodeAsPieces(text);
    const tokens = this.sp.encodeAsPieces(this.opts.unkToken + text);
    return tokens.length >= this.unkTokenLength ? tokens.slice(this.unkTokenLength) : tokens;
  }

  tokenToId(token: string): number { return this.sp.pieceToId(token); }

  hasToken(token: string): boolean {
    return this.sp.pieceToId(token) !== this.sp.model.unkId || token === this.sp.idToPiece(this.sp.model.unkId);
  }

  idToToken(id: number): string | undefined { return this.sp.idToPiece(id); }

  /** convert_tokens_to_string(): special tokens are spliced in verbatim between SentencePiece decodes. */
  tokensToString(input: string[]): string {
    const tokens = [...input];
    if (tokens[0].startsWith(SPACE) && this.opts.addPrefixSpace) tokens[0] = tokens[0].slice(1);
    let current: string[] = [];
    let out = '';
    let prevIsSpecial = false;
    tokens.forEach((token, i) => {
      if (this.opts.specialTokens.has(token)) {
        if (!prevIsSpecial && i !== 0 && this.opts.legacy) out += ' ';
        out += this.sp.decodePieces(current) + token;
        prevIsSpecial = true;
        current = [];
      } else {
        if (prevIsSpecial && i === 1 && this.opts.addPrefixSpace && !token.startsWith(SPACE)) out += ' ';
        current.push(token);
        prevIsSpecial = false;
      }
    });
    return out + this.sp.decodePieces(current);
  }
}
