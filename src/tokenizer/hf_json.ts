// The tokenizer.json engine: Hugging Face's own pure-JS @huggingface/tokenizers runs the pipeline
// (normalizer, pre-tokenizer, BPE / Unigram / WordPiece, post-processor, decoder). Also builds the
// tokenizer.json that a GPT-2 style vocab.json + merges.txt pair stands for, so both share one engine.
// Reference: huggingface/tokenizers tokenizer.json format; transformers tokenization_gpt2.py.
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import type { TokenizerEngine } from './engine.js';
import type { AddedTokenSpec } from './tokenizer_config.js';

export interface HfJsonOptions {
  /** lib config: special token strings, additional_special_tokens, clean_up_tokenization_spaces */
  readonly libConfig: Record<string, unknown>;
  /**
   * add_bos_token / add_eos_token from the config: when either is set, encode puts these tokens
   * around the text itself instead of running the post-processor (as transformers' fast Llama/Gemma/
   * GPT-NeoX tokenizers rebuild theirs); an unset flag keeps what the post-processor does.
   */
  readonly explicitSpecial?: { readonly bos: string | null; readonly eos: string | null; readonly addBos?: boolean; readonly addEos?: boolean };
  /** prepend one space to the whole text (slow GPT2Tokenizer's add_prefix_space) */
  readonly prefixSpace?: boolean;
}

type Json = Record<string, unknown>;

function modelVocabSize(model: Json, file: string): number {
  const vocab = model.vocab;
  if (Array.isArray(vocab)) return vocab.length;
  if (typeof vocab === 'object' && vocab !== null) return Object.keys(vocab).length;
  throw new Error(`${file}: model.vocab is missing or not a list/object`);
}

function parseAddedTokens(json: Json, file: string): Map<number, AddedTokenSpec> {
  const out = new Map<number, AddedTokenSpec>();
  const list = json.added_tokens ?? [];
  if (!Array.isArray(list)) throw new Error(`${file}: added_tokens must be a list`);
  list.forEach((t: Json, i) => {
    if (typeof t !== 'object' || t === null || typeof t.content !== 'string' || !Number.isInteger(t.id)) {
      throw new Error(`${file}: added_tokens[${i}] needs an integer "id" and a string "content"`);
    }
    out.set(t.id as number, {
      content: t.content, lstrip: t.lstrip === true, rstrip: t.rstrip === true, singleWord: t.single_word === true,
      normalized: t.normalized !== false, special: t.special === true,
    });
  });
  return out;
}

/**
 * A tokenizer.json run by @huggingface/tokenizers.
 * @example
 * const e = new HfJsonEngine(JSON.parse(readFileSync('tokenizer.json', 'utf8')), 'tokenizer.json', { libConfig: {} });
 * e.encode('Hello world', true).ids // [15496, 995] for GPT-2
 */
export class HfJsonEngine implements TokenizerEngine {
  private readonly lib: HfTokenizer;
  readonly vocabSize: number;
  readonly addedTokens: ReadonlyMap<number, AddedTokenSpec>;

  private readonly wrap: { bos: number | null; eos: number | null } | null = null;

  constructor(json: unknown, file: string, private readonly opts: HfJsonOptions) {
    if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${file}: expected a JSON object`);
    const j = json as Json;
    if (typeof j.model !== 'object' || j.model === null) throw new Error(`${file}: missing "model"`);
    this.vocabSize = modelVocabSize(j.model as Json, file);
    this.addedTokens = parseAddedTokens(j, file);
    // The library reads these keys and fails on absent ones; a minimal tokenizer.json may omit them.
    const full = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...j };
    try {
      this.lib = new HfTokenizer(full, opts.libConfig);
    } catch (e) {
      throw new Error(`${file}: ${(e as Error).message}`);
    }
    const x = opts.explicitSpecial;
    if (x !== undefined && (x.addBos !== undefined || x.addEos !== undefined)) {
      const post = this.lib.encode('', { add_special_tokens: true }).ids;
      const id = (t: string | null): number | null => (t === null ? null : (this.lib.token_to_id(t) ?? null));
      const bos = id(x.bos), eos = id(x.eos);
      const addBos = x.addBos ?? (bos !== null && post[0] === bos);
      const addEos = x.addEos ?? (eos !== null && post.at(-1) === eos);
      if (addBos && bos === null) throw new Error(`${file}: add_bos_token is true but bos_token ${JSON.stringify(x.bos)} is not a token of this vocabulary`);
      if (addEos && eos === null) throw new Error(`${file}: add_eos_token is true but eos_token ${JSON.stringify(x.eos)} is not a token of this vocabulary`);
      this.wrap = { bos: addBos ? bos : null, eos: addEos ? eos : null };
    }
  }

  get length(): number {
    let extra = 0;
    for (const id of this.addedTokens.keys()) if (id >= this.vocabSize) extra++;
    return this.vocabSize + extra;
  }

  encode(input: string, addSpecialTokens: boolean): { ids: number[]; tokens: string[] } {
    const text = this.opts.prefixSpace ? ' ' + input : input;
    const x = this.wrap;
    if (x === null) {
      const e = this.lib.encode(text, { add_special_tokens: addSpecialTokens });
      return { ids: e.ids, tokens: e.tokens };
    }
    const e = this.lib.encode(text, { add_special_tokens: false });
    if (!addSpecialTokens) return { ids: e.ids, tokens: e.tokens };
    const ids = [...(x.bos !== null ? [x.bos] : []), ...e.ids, ...(x.eos !== null ? [x.eos] : [])];
    return { ids, tokens: ids.map((id) => this.idToToken(id) ?? '') };
  }

  decode(ids: readonly number[], skipSpecialTokens: boolean): string {
    // The library rejects an empty list; transformers decodes it to "".
    if (ids.length === 0) return '';
    return this.lib.decode([...ids], { skip_special_tokens: skipSpecialTokens });
  }

  tokenToId(token: string): number | undefined { return this.lib.token_to_id(token); }

  idToToken(id: number): string | undefined { return this.lib.id_to_token(id); }
}

/**
 * The tokenizer.json equivalent of GPT2Tokenizer(vocab.json, merges.txt): byte-level BPE with the
 * GPT-2 split regex, no normalizer, byte-level decoding; the special tokens become added tokens.
 * @example
 * const json = gpt2TokenizerJson(vocab, mergesText, [{ id: 50256, content: '<|endoftext|>', special: true }], 'merges.txt');
 */
export function gpt2TokenizerJson(
  vocab: Record<string, number>, mergesText: string, added: readonly { id: number; spec: AddedTokenSpec }[], mergesFile: string,
): Json {
  const merges: string[] = [];
  mergesText.split(/\r?\n/).forEach((line, i) => {
    // GPT2Tokenizer drops the "#version" header and blank lines; every other line is "left right".
    if (line.trim() === '' || (i === 0 && line.startsWith('#version'))) return;
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 2) throw new Error(`${mergesFile}: line ${i + 1} is not a merge "left right": ${JSON.stringify(line)}`);
    merges.push(parts.join(' '));
  });
  return {
    version: '1.0',
    added_tokens: added.map(({ id, spec }) => ({
      id, content: spec.content, single_word: spec.singleWord, lstrip: spec.lstrip, rstrip: spec.rstrip,
      normalized: spec.normalized, special: spec.special,
    })),
    normalizer: null,
    // add_prefix_space is applied by Tokenizer (once, to the whole text, as the slow tokenizer does).
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false, vocab, merges,
    },
  };
}
