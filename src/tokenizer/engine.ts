// The contract between the public Tokenizer and the engines behind it: tokenizer.json through
// @huggingface/tokenizers (hf_json.ts) and the slow-tokenizer ports (slow_tokenizer.ts).
import type { AddedTokenSpec } from './tokenizer_config.js';

/** What the Kestrel Tokenizer needs from any engine (see tokenizer.ts). */
export interface TokenizerEngine {
  /** ids and tokens; special tokens added when asked, as the engine's own rules say */
  encode(text: string, addSpecialTokens: boolean): { ids: number[]; tokens: string[] };
  decode(ids: readonly number[], skipSpecialTokens: boolean): string;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  /** base vocabulary without added tokens (transformers' vocab_size) */
  readonly vocabSize: number;
  /** with added tokens (transformers' len(tokenizer)) */
  readonly length: number;
  readonly addedTokens: ReadonlyMap<number, AddedTokenSpec>;
}
