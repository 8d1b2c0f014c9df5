// tokenizer_config.json / special_tokens_map.json / added_tokens.json / chat_template.jinja of a
// model folder, read and validated into one typed TokenizerConfig. Special tokens may be strings or
// AddedToken objects ({content, lstrip, rstrip, normalized, single_word, special}).
// Reference: transformers tokenization_utils_base.py (from_pretrained, SPECIAL_TOKENS_ATTRIBUTES).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface AddedTokenSpec {
  readonly content: string;
  readonly lstrip: boolean;
  readonly rstrip: boolean;
  readonly singleWord: boolean;
  readonly normalized: boolean;
  readonly special: boolean;
}

/** Special-token roles in transformers' order (SPECIAL_TOKENS_ATTRIBUTES). */
export const SPECIAL_ROLES = ['bos', 'eos', 'unk', 'sep', 'pad', 'cls', 'mask'] as const;
export type SpecialRole = (typeof SPECIAL_ROLES)[number];

export interface NamedTemplate { readonly name: string; readonly template: string }

export interface TokenizerConfig {
  /** role -> token (null when the config sets it to null, absent when not mentioned) */
  readonly special: Partial<Record<SpecialRole, AddedTokenSpec | null>>;
  readonly additionalSpecialTokens: readonly AddedTokenSpec[];
  /** added_tokens_decoder (id -> token), plus added_tokens.json entries */
  readonly addedTokens: ReadonlyMap<number, AddedTokenSpec>;
  readonly addBosToken?: boolean;
  readonly addEosToken?: boolean;
  readonly addPrefixSpace?: boolean;
  readonly legacy?: boolean;
  readonly doLowerCase?: boolean;
  readonly stripAccents?: boolean | null;
  readonly tokenizeChineseChars?: boolean;
  readonly cleanUpTokenizationSpaces?: boolean;
  readonly modelMaxLength?: number;
  readonly tokenizerClass?: string;
  /** chat templates by name ("default" for a single string or chat_template.jinja) */
  readonly chatTemplates: readonly NamedTemplate[];
  /** the parsed tokenizer_config.json as is, for fields not modelled here */
  readonly raw: Readonly<Record<string, unknown>>;
}

/** Reads and parses a JSON file; a syntax error names the file. Returns undefined when absent. */
export function readJsonFile(path: string): unknown {
  if (!existsSync(path)) return undefined;
  const text = readFileSync(path, 'utf8');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${path}: invalid JSON: ${(e as Error).message}`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A string or an AddedToken dict as a spec. Strings become special tokens that are not normalized,
 * as transformers does for the special-token attributes.
 * @example
 * parseAddedToken({ content: '<s>', lstrip: false }, 'f.json', 'bos_token').content // '<s>'
 */
export function parseAddedToken(v: unknown, file: string, field: string, special = true): AddedTokenSpec {
  if (typeof v === 'string') return { content: v, lstrip: false, rstrip: false, singleWord: false, normalized: !special, special };
  if (!isObject(v) || typeof v.content !== 'string') {
    throw new Error(`${file}: ${field} must be a string or an AddedToken object with a string "content", got ${JSON.stringify(v)}`);
  }
  const flag = (k: string, dflt: boolean): boolean => {
    const x = v[k];
    if (x === undefined || x === null) return dflt;
    if (typeof x !== 'boolean') throw new Error(`${file}: ${field}.${k} must be a boolean, got ${JSON.stringify(x)}`);
    return x;
  };
  const isSpecial = flag('special', special);
  return {
    content: v.content, lstrip: flag('lstrip', false), rstrip: flag('rstrip', false),
    singleWord: flag('single_word', false), normalized: flag('normalized', !isSpecial), special: isSpecial,
  };
}

function optBool(obj: Record<string, unknown>, key: string, file: string): boolean | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw new Error(`${file}: ${key} must be a boolean, got ${JSON.stringify(v)}`);
  return v;
}

function parseChatTemplates(v: unknown, file: string): NamedTemplate[] {
  if (v === undefined || v === null) return [];
  if (typeof v === 'string') return [{ name: 'default', template: v }];
  if (Array.isArray(v)) {
    return v.map((t, i) => {
      if (!isObject(t) || typeof t.name !== 'string' || typeof t.template !== 'string') {
        throw new Error(`${file}: chat_template[${i}] must be {"name": string, "template": string}`);
      }
      return { name: t.name, template: t.template };
    });
  }
  throw new Error(`${file}: chat_template must be a string or a list of {name, template}, got ${typeof v}`);
}

function parseSpecial(src: Record<string, unknown>, file: string, into: TokenizerConfig['special'] & object): void {
  for (const role of SPECIAL_ROLES) {
    const key = `${role}_token`;
    if (!(key in src)) continue;
    (into as Record<string, AddedTokenSpec | null>)[role] = src[key] === null ? null : parseAddedToken(src[key], file, key);
  }
}

function parseAdditional(v: unknown, file: string): AddedTokenSpec[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new Error(`${file}: additional_special_tokens must be a list`);
  return v.map((t, i) => parseAddedToken(t, file, `additional_special_tokens[${i}]`));
}

function parseAddedDecoder(v: unknown, file: string, into: Map<number, AddedTokenSpec>): void {
  if (v === undefined || v === null) return;
  if (!isObject(v)) throw new Error(`${file}: added_tokens_decoder must be an object {id: AddedToken}`);
  for (const [k, t] of Object.entries(v)) {
    const id = Number(k);
    if (!Number.isInteger(id) || id < 0) throw new Error(`${file}: added_tokens_decoder key ${JSON.stringify(k)} is not a token id`);
    into.set(id, parseAddedToken(t, file, `added_tokens_decoder.${k}`, false));
  }
}

/**
 * Reads the tokenizer settings of a model folder (every file optional).
 * @example
 * const cfg = readTokenizerConfig('models/tinyllama');
 * cfg.special.bos?.content // '<s>'
 */
export function readTokenizerConfig(dir: string): TokenizerConfig {
  const cfgFile = join(dir, 'tokenizer_config.json');
  const cfgJson = readJsonFile(cfgFile) ?? {};
  if (!isObject(cfgJson)) throw new Error(`${cfgFile}: expected a JSON object`);
  const special: Partial<Record<SpecialRole, AddedTokenSpec | null>> = {};
  const mapFile = join(dir, 'special_tokens_map.json');
  const mapJson = readJsonFile(mapFile);
  if (mapJson !== undefined && !isObject(mapJson)) throw new Error(`${mapFile}: expected a JSON object`);
  // special_tokens_map.json first, tokenizer_config.json overrides (from_pretrained's order).
  if (mapJson) parseSpecial(mapJson, mapFile, special);
  parseSpecial(cfgJson, cfgFile, special);
  const additional = 'additional_special_tokens' in cfgJson
    ? parseAdditional(cfgJson.additional_special_tokens, cfgFile)
    : parseAdditional(mapJson?.additional_special_tokens, mapFile);

  const addedTokens = new Map<number, AddedTokenSpec>();
  const addedFile = join(dir, 'added_tokens.json');
  const addedJson = readJsonFile(addedFile);
  if (addedJson !== undefined) {
    if (!isObject(addedJson)) throw new Error(`${addedFile}: expected {token: id}`);
    for (const [content, id] of Object.entries(addedJson)) {
      if (!Number.isInteger(id)) throw new Error(`${addedFile}: id of ${JSON.stringify(content)} is not an integer`);
      addedTokens.set(id as number, parseAddedToken(content, addedFile, content, false));
    }
  }
  parseAddedDecoder(cfgJson.added_tokens_decoder, cfgFile, addedTokens);

  let chatTemplates = parseChatTemplates(cfgJson.chat_template, cfgFile);
  const jinjaFile = join(dir, 'chat_template.jinja');
  // transformers >= 4.47 writes the template beside the config; it wins over an inline one.
  if (existsSync(jinjaFile)) chatTemplates = [{ name: 'default', template: readFileSync(jinjaFile, 'utf8') }, ...chatTemplates.filter((t) => t.name !== 'default')];

  const maxLen = cfgJson.model_max_length;
  if (maxLen !== undefined && maxLen !== null && typeof maxLen !== 'number') throw new Error(`${cfgFile}: model_max_length must be a number`);
  const cls = cfgJson.tokenizer_class;
  const strip = cfgJson.strip_accents;
  return {
    special, additionalSpecialTokens: additional, addedTokens,
    addBosToken: optBool(cfgJson, 'add_bos_token', cfgFile), addEosToken: optBool(cfgJson, 'add_eos_token', cfgFile),
    addPrefixSpace: optBool(cfgJson, 'add_prefix_space', cfgFile), legacy: optBool(cfgJson, 'legacy', cfgFile),
    doLowerCase: optBool(cfgJson, 'do_lower_case', cfgFile),
    stripAccents: strip === null ? null : optBool(cfgJson, 'strip_accents', cfgFile),
    tokenizeChineseChars: optBool(cfgJson, 'tokenize_chinese_chars', cfgFile),
    cleanUpTokenizationSpaces: optBool(cfgJson, 'clean_up_tokenization_spaces', cfgFile),
    modelMaxLength: typeof maxLen === 'number' ? maxLen : undefined,
    tokenizerClass: typeof cls === 'string' ? cls : undefined,
    chatTemplates, raw: cfgJson,
  };
}
