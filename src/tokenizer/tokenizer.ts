// The public Tokenizer: one API over every engine (tokenizer.json, GPT-2 vocab/merges, SentencePiece,
// BERT WordPiece), with the special tokens, added tokens and chat templates of the model folder.
// Mirrors the parts of transformers' PreTrainedTokenizerBase that training and serving use.
// Reference: transformers tokenization_utils_base.py (encode, decode, special tokens, apply_chat_template).
import { type ChatMessage, type ChatTemplateOptions, renderChatTemplate } from './chat_template.js';
import type { TokenizerEngine } from './engine.js';
import type { AddedTokenSpec, NamedTemplate, SpecialRole } from './tokenizer_config.js';

export type TokenizerSource = 'tokenizer.json' | 'vocab.json' | 'tokenizer.model' | 'vocab.txt';

export interface TokenizerInit {
  readonly engine: TokenizerEngine;
  readonly source: TokenizerSource;
  /** role -> token string (null or absent: the tokenizer has none) */
  readonly special: Partial<Record<SpecialRole, string | null>>;
  readonly additionalSpecialTokens: readonly string[];
  readonly modelMaxLength?: number;
  readonly chatTemplates: readonly NamedTemplate[];
}

export interface EncodeOptions { readonly addSpecialTokens?: boolean }
export interface DecodeOptions { readonly skipSpecialTokens?: boolean }

/**
 * A loaded tokenizer (see loadTokenizer).
 * @example
 * const tok = await loadTokenizer('models/gpt2');
 * const ids = tok.encode('Hello world');     // [15496, 995]
 * tok.decode(ids);                           // 'Hello world'
 */
export class Tokenizer {
  readonly source: TokenizerSource;
  readonly modelMaxLength: number | undefined;
  readonly chatTemplates: readonly NamedTemplate[];
  readonly additionalSpecialTokens: readonly string[];
  private readonly engine: TokenizerEngine;
  private readonly special: Partial<Record<SpecialRole, string | null>>;

  constructor(init: TokenizerInit) {
    this.engine = init.engine;
    this.source = init.source;
    this.special = init.special;
    this.additionalSpecialTokens = init.additionalSpecialTokens;
    this.modelMaxLength = init.modelMaxLength;
    this.chatTemplates = init.chatTemplates;
  }

  /** Token ids of text; special tokens (BOS, [CLS]/[SEP], ...) added unless addSpecialTokens is false. */
  encode(text: string, { addSpecialTokens = true }: EncodeOptions = {}): number[] {
    return this.engine.encode(text, addSpecialTokens).ids;
  }

  /** Text of ids; special tokens dropped when skipSpecialTokens. */
  decode(ids: readonly number[], { skipSpecialTokens = false }: DecodeOptions = {}): string {
    return this.engine.decode(ids, skipSpecialTokens);
  }

  /** Token strings of text, without special tokens added (transformers' tokenize). */
  tokenize(text: string): string[] {
    return this.engine.encode(text, false).tokens;
  }

  convertIdsToTokens(ids: readonly number[]): (string | undefined)[] {
    return ids.map((id) => this.engine.idToToken(id));
  }

  convertTokensToIds(tokens: readonly string[]): (number | undefined)[] {
    return tokens.map((t) => this.engine.tokenToId(t));
  }

  /** Base vocabulary size, without added tokens (transformers' vocab_size). */
  get vocabSize(): number { return this.engine.vocabSize; }

  /** Vocabulary size with added tokens (transformers' len(tokenizer)); the embedding must cover it. */
  get length(): number { return this.engine.length; }

  /** Added tokens by id (special or not), as added_tokens_decoder lists them. */
  get addedTokens(): ReadonlyMap<number, AddedTokenSpec> { return this.engine.addedTokens; }

  private token(role: SpecialRole): string | null { return this.special[role] ?? null; }
  private id(role: SpecialRole): number | null {
    const t = this.token(role);
    return t === null ? null : (this.engine.tokenToId(t) ?? null);
  }

  get bosToken(): string | null { return this.token('bos'); }
  get eosToken(): string | null { return this.token('eos'); }
  get unkToken(): string | null { return this.token('unk'); }
  get padToken(): string | null { return this.token('pad'); }
  get sepToken(): string | null { return this.token('sep'); }
  get clsToken(): string | null { return this.token('cls'); }
  get maskToken(): string | null { return this.token('mask'); }
  get bosTokenId(): number | null { return this.id('bos'); }
  get eosTokenId(): number | null { return this.id('eos'); }
  get unkTokenId(): number | null { return this.id('unk'); }
  get padTokenId(): number | null { return this.id('pad'); }
  get sepTokenId(): number | null { return this.id('sep'); }
  get clsTokenId(): number | null { return this.id('cls'); }
  get maskTokenId(): number | null { return this.id('mask'); }

  /** Ids that end generation: the eos token (generation_config.json may add more; see infer). */
  get eosTokenIds(): number[] {
    const id = this.eosTokenId;
    return id === null ? [] : [id];
  }

  /** Whether encode() puts the BOS token first (as the config and the engine's rules decide). */
  get addBosToken(): boolean {
    const bos = this.bosTokenId;
    return bos !== null && this.engine.encode('', true).ids[0] === bos;
  }

  /** Whether encode() puts the EOS token last. */
  get addEosToken(): boolean {
    const eos = this.eosTokenId;
    return eos !== null && this.engine.encode('', true).ids.at(-1) === eos;
  }

  /** all_special_tokens: the role tokens, then additional_special_tokens, without duplicates. */
  get allSpecialTokens(): string[] {
    const roles = (['bos', 'eos', 'unk', 'sep', 'pad', 'cls', 'mask'] as const).map((r) => this.token(r)).filter((t): t is string => t !== null);
    return [...new Set([...roles, ...this.additionalSpecialTokens])];
  }

  /** The variables transformers passes to a chat template: its special_tokens_map. */
  get specialTokensMap(): Record<string, string | string[]> {
    const out: Record<string, string | string[]> = {};
    for (const r of ['bos', 'eos', 'unk', 'sep', 'pad', 'cls', 'mask'] as const) {
      const t = this.token(r);
      if (t !== null) out[`${r}_token`] = t;
    }
    if (this.additionalSpecialTokens.length > 0) out.additional_special_tokens = [...this.additionalSpecialTokens];
    return out;
  }

  /** The folder's chat template: by name, else "default", else the only one; undefined if none. */
  chatTemplate(name?: string): string | undefined {
    const ts = this.chatTemplates;
    if (name !== undefined) {
      const t = ts.find((x) => x.name === name);
      if (t === undefined) throw new Error(`chat template ${JSON.stringify(name)} not found; this tokenizer has ${ts.map((x) => x.name).join(', ') || 'none'}`);
      return t.template;
    }
    return (ts.find((x) => x.name === 'default') ?? (ts.length === 1 ? ts[0] : undefined))?.template;
  }

  /**
   * Renders messages with the folder's chat template (or options.template), with this tokenizer's
   * special tokens as variables, as transformers' apply_chat_template(tokenize=False) does.
   * @example
   * tok.applyChatTemplate([{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true })
   */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions & { templateName?: string } = {}): string {
    const { templateName, ...rest } = options;
    const template = rest.template ?? this.chatTemplate(templateName);
    if (template === undefined) {
      throw new Error('applyChatTemplate: this tokenizer has no chat template (tokenizer_config.json chat_template or chat_template.jinja); pass { template } or pick one with detectChatTemplate');
    }
    return renderChatTemplate(messages, { ...rest, template, specialTokens: { ...this.specialTokensMap, ...rest.specialTokens } });
  }
}
