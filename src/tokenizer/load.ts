// loadTokenizer(dir): picks the tokenizer source of a model folder (tokenizer.json, else GPT-2
// vocab.json + merges.txt, else SentencePiece tokenizer.model, else BERT vocab.txt), applies
// tokenizer_config.json (special tokens, add_bos/add_eos, legacy, ...) and the class defaults
// transformers uses for each (GPT2Tokenizer, LlamaTokenizer, BertTokenizer).
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BertWordPiece, parseVocabTxt } from './bert_wordpiece.js';
import { HfJsonEngine, gpt2TokenizerJson } from './hf_json.js';
import { LlamaSentencePiece } from './llama_sentencepiece.js';
import { parseSentencePieceModel } from './sentencepiece_model.js';
import { SlowTokenizer } from './slow_tokenizer.js';
import { Tokenizer, type TokenizerSource } from './tokenizer.js';
import {
  type AddedTokenSpec, SPECIAL_ROLES, type SpecialRole, type TokenizerConfig, parseAddedToken, readJsonFile, readTokenizerConfig,
} from './tokenizer_config.js';

/** Overrides of tokenizer_config.json, like keyword arguments to transformers' from_pretrained. */
export interface LoadTokenizerOptions {
  /** force one source instead of the first one present */
  readonly source?: TokenizerSource;
  readonly legacy?: boolean;
  readonly addBosToken?: boolean;
  readonly addEosToken?: boolean;
  readonly addPrefixSpace?: boolean;
  readonly doLowerCase?: boolean;
}

const SOURCES: readonly { source: TokenizerSource; files: readonly string[] }[] = [
  { source: 'tokenizer.json', files: ['tokenizer.json'] },
  { source: 'vocab.json', files: ['vocab.json', 'merges.txt'] },
  { source: 'tokenizer.model', files: ['tokenizer.model'] },
  { source: 'vocab.txt', files: ['vocab.txt'] },
];

type Specials = Partial<Record<SpecialRole, AddedTokenSpec | null>>;

/** Class defaults, overridden role by role by the config (a null in the config removes a token). */
function resolveSpecial(defaults: Partial<Record<SpecialRole, string>>, cfg: TokenizerConfig): Specials {
  const out: Specials = {};
  for (const role of SPECIAL_ROLES) {
    if (role in cfg.special) out[role] = cfg.special[role] ?? null;
    else if (defaults[role] !== undefined) out[role] = parseAddedToken(defaults[role], 'defaults', role);
  }
  return out;
}

/** all_special_tokens_extended: roles in order, then additional_special_tokens, first spelling kept. */
function specialList(special: Specials, cfg: TokenizerConfig): AddedTokenSpec[] {
  const out: AddedTokenSpec[] = [];
  for (const t of [...SPECIAL_ROLES.map((r) => special[r]), ...cfg.additionalSpecialTokens]) {
    if (t && !out.some((o) => o.content === t.content)) out.push(t);
  }
  return out;
}

function pickSource(dir: string, forced: TokenizerSource | undefined): TokenizerSource {
  const candidates = forced === undefined ? SOURCES : SOURCES.filter((s) => s.source === forced);
  for (const c of candidates) {
    const missing = c.files.filter((f) => !existsSync(join(dir, f)));
    if (missing.length === 0) return c.source;
    if (forced !== undefined) throw new Error(`loadTokenizer: ${dir} has no ${missing.join(' or ')} (source ${forced} was requested)`);
    if (c.source === 'vocab.json' && missing.length === 1) {
      throw new Error(`loadTokenizer: ${dir} has ${c.files.find((f) => !missing.includes(f))} but no ${missing[0]} (a GPT-2 style BPE tokenizer needs both)`);
    }
  }
  throw new Error(`loadTokenizer: ${dir} has no tokenizer files (looked for tokenizer.json, vocab.json + merges.txt, tokenizer.model, vocab.txt)`);
}

/** The special-token strings and options the @huggingface/tokenizers library reads from its config. */
function libConfig(special: Specials, cfg: TokenizerConfig, cleanUp: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = { clean_up_tokenization_spaces: cleanUp, additional_special_tokens: cfg.additionalSpecialTokens.map((t) => t.content) };
  for (const role of SPECIAL_ROLES) if (special[role]) out[`${role}_token`] = special[role]!.content;
  for (const k of ['remove_space', 'do_lowercase_and_remove_accent']) if (k in cfg.raw) out[k] = cfg.raw[k];
  return out;
}

function loadJsonEngine(dir: string, cfg: TokenizerConfig, o: LoadTokenizerOptions, special: Specials): HfJsonEngine {
  const file = join(dir, 'tokenizer.json');
  const addBos = o.addBosToken ?? cfg.addBosToken, addEos = o.addEosToken ?? cfg.addEosToken;
  return new HfJsonEngine(readJsonFile(file), file, {
    libConfig: libConfig(special, cfg, cfg.cleanUpTokenizationSpaces ?? true),
    explicitSpecial: { bos: special.bos?.content ?? null, eos: special.eos?.content ?? null, addBos, addEos },
  });
}

function loadGpt2Engine(dir: string, cfg: TokenizerConfig, o: LoadTokenizerOptions, special: Specials): HfJsonEngine {
  const vocabFile = join(dir, 'vocab.json'), mergesFile = join(dir, 'merges.txt');
  const vocab = readJsonFile(vocabFile);
  if (typeof vocab !== 'object' || vocab === null || Array.isArray(vocab)) throw new Error(`${vocabFile}: expected a JSON object {token: id}`);
  for (const [t, id] of Object.entries(vocab)) {
    if (!Number.isInteger(id) || (id as number) < 0) throw new Error(`${vocabFile}: id of ${JSON.stringify(t)} is not a non-negative integer: ${JSON.stringify(id)}`);
  }
  const v = vocab as Record<string, number>;
  // Added tokens keep their config ids; special tokens take their vocab id or the next free one.
  const added = [...cfg.addedTokens].map(([id, spec]) => ({ id, spec }));
  let next = Math.max(Object.keys(v).length, ...added.map((a) => a.id + 1));
  for (const spec of specialList(special, cfg)) {
    if (added.some((a) => a.spec.content === spec.content)) continue;
    added.push({ id: v[spec.content] ?? next++, spec });
  }
  const json = gpt2TokenizerJson(v, readFileSync(mergesFile, 'utf8'), added, mergesFile);
  return new HfJsonEngine(json, vocabFile, {
    libConfig: libConfig(special, cfg, cfg.cleanUpTokenizationSpaces ?? true),
    explicitSpecial: { bos: special.bos?.content ?? null, eos: null, addBos: o.addBosToken ?? cfg.addBosToken ?? false, addEos: false },
    prefixSpace: o.addPrefixSpace ?? cfg.addPrefixSpace ?? false,
  });
}

function loadSentencePieceEngine(dir: string, cfg: TokenizerConfig, o: LoadTokenizerOptions, special: Specials): SlowTokenizer {
  const file = join(dir, 'tokenizer.model');
  const model = parseSentencePieceModel(readFileSync(file), file);
  if (model.modelType !== 2) {
    throw new Error(`${file}: SentencePiece model_type ${model.modelType} (1 unigram, 3 word, 4 char) is not supported from tokenizer.model; only BPE (Llama-style) is. Use the folder's tokenizer.json`);
  }
  if (model.precompiledCharsmap.length > 0 || model.treatWhitespaceAsSuffix) {
    throw new Error(`${file}: normalizer ${JSON.stringify(model.normalizerName)} (precompiled charsmap / whitespace suffix) is not supported; use the folder's tokenizer.json`);
  }
  const specials = specialList(special, cfg);
  const unk = special.unk?.content;
  if (unk === undefined) throw new Error(`${file}: LlamaTokenizer needs an unk_token (tokenizer_config.json sets it to null)`);
  const sp = new LlamaSentencePiece(model, {
    legacy: o.legacy ?? cfg.legacy ?? true, addPrefixSpace: o.addPrefixSpace ?? cfg.addPrefixSpace ?? true,
    unkToken: unk, specialTokens: new Set(specials.map((t) => t.content)),
  });
  const addBos = o.addBosToken ?? cfg.addBosToken ?? true, addEos = o.addEosToken ?? cfg.addEosToken ?? false;
  const tok: SlowTokenizer = new SlowTokenizer(sp, {
    specialTokens: specials, additionalSpecialTokens: cfg.additionalSpecialTokens.map((t) => t.content), addedTokens: cfg.addedTokens, lowerCase: false,
    cleanUpTokenizationSpaces: cfg.cleanUpTokenizationSpaces ?? false,
    buildInputs: (ids: number[]): number[] => [...(addBos ? [tok.idOf(special.bos!.content)] : []), ...ids, ...(addEos ? [tok.idOf(special.eos!.content)] : [])],
  });
  if (addBos && !special.bos) throw new Error(`${file}: add_bos_token is true but there is no bos_token`);
  if (addEos && !special.eos) throw new Error(`${file}: add_eos_token is true but there is no eos_token`);
  return tok;
}

function loadWordPieceEngine(dir: string, cfg: TokenizerConfig, o: LoadTokenizerOptions, special: Specials): SlowTokenizer {
  const file = join(dir, 'vocab.txt');
  const vocab = parseVocabTxt(readFileSync(file, 'utf8'));
  const unk = special.unk?.content;
  if (unk === undefined || !vocab.has(unk)) throw new Error(`${file}: the unk token ${JSON.stringify(unk ?? null)} is not in the vocabulary`);
  const [cls, sep] = [special.cls, special.sep];
  if (!cls || !sep) throw new Error(`${file}: BertTokenizer needs cls_token and sep_token`);
  const specials = specialList(special, cfg);
  const doBasic = cfg.raw.do_basic_tokenize !== false;
  const wp = new BertWordPiece(vocab, unk, doBasic ? {
    doLowerCase: o.doLowerCase ?? cfg.doLowerCase ?? true, stripAccents: cfg.stripAccents ?? null,
    tokenizeChineseChars: cfg.tokenizeChineseChars ?? true, neverSplit: new Set(specials.map((t) => t.content)),
  } : null);
  const tok: SlowTokenizer = new SlowTokenizer(wp, {
    specialTokens: specials, additionalSpecialTokens: cfg.additionalSpecialTokens.map((t) => t.content), addedTokens: cfg.addedTokens,
    lowerCase: doBasic && (o.doLowerCase ?? cfg.doLowerCase ?? true),
    cleanUpTokenizationSpaces: cfg.cleanUpTokenizationSpaces ?? true,
    buildInputs: (ids: number[]): number[] => [tok.idOf(cls.content), ...ids, tok.idOf(sep.content)],
  });
  return tok;
}

const DEFAULTS: Record<TokenizerSource, Partial<Record<SpecialRole, string>>> = {
  'tokenizer.json': {},
  'vocab.json': { bos: '<|endoftext|>', eos: '<|endoftext|>', unk: '<|endoftext|>' },
  'tokenizer.model': { bos: '<s>', eos: '</s>', unk: '<unk>' },
  'vocab.txt': { unk: '[UNK]', sep: '[SEP]', pad: '[PAD]', cls: '[CLS]', mask: '[MASK]' },
};

/**
 * Loads the tokenizer of a Hugging Face model folder.
 * @example
 * const tok = await loadTokenizer('models/TinyLlama-1.1B-Chat');
 * tok.encode('Hello')  // [1, 15043]
 * const legacy = await loadTokenizer('models/llama2', { legacy: true });
 */
export async function loadTokenizer(dir: string, options: LoadTokenizerOptions = {}): Promise<Tokenizer> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`loadTokenizer: ${dir} is not a directory`);
  const cfg = readTokenizerConfig(dir);
  const source = pickSource(dir, options.source);
  const special = resolveSpecial(DEFAULTS[source], cfg);
  const engine =
    source === 'tokenizer.json' ? loadJsonEngine(dir, cfg, options, special)
      : source === 'vocab.json' ? loadGpt2Engine(dir, cfg, options, special)
        : source === 'tokenizer.model' ? loadSentencePieceEngine(dir, cfg, options, special)
          : loadWordPieceEngine(dir, cfg, options, special);
  const roles: Partial<Record<SpecialRole, string | null>> = {};
  for (const r of SPECIAL_ROLES) if (r in special) roles[r] = special[r]?.content ?? null;
  return new Tokenizer({
    engine, source, special: roles, additionalSpecialTokens: cfg.additionalSpecialTokens.map((t) => t.content),
    modelMaxLength: cfg.modelMaxLength, chatTemplates: cfg.chatTemplates,
  });
}
