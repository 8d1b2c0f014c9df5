// The tokenizer as llama.cpp reads it from GGUF (gguf-py Keys.Tokenizer): tokenizer.ggml.model
// ("gpt2" byte-level BPE with merges, or "llama" SentencePiece with scores), the tokens by id with
// their types, the special ids, add_bos/add_eos and the chat template. The token list is padded to
// the model's vocab_size with [PADn] tokens (as convert_hf_to_gguf.py does), and made unique:
// llama.cpp aborts on a duplicate token string, so a later duplicate is renamed (and said).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readJson } from '../io/hf_folder.js';
import { PieceType, parseSentencePieceModel } from '../tokenizer/sentencepiece_model.js';
import type { Tokenizer } from '../tokenizer/tokenizer.js';
import { type GgufValue, gv } from './writer.js';

/** llama_token_type (the same numbers as SentencePiece's piece types). */
export const TokenType = PieceType;

export interface VocabExport {
  kv: [string, GgufValue][];
  warnings: string[];
}

interface RawVocab { model: 'gpt2' | 'llama'; tokens: string[]; types: number[]; scores?: number[]; merges?: string[]; pre?: string }

/** The Split regexes of the BPE pre-tokenizers llama.cpp names (llama-vocab.cpp's pre types). */
const PRE_TOKENIZERS: [name: string, test: (pattern: string) => boolean][] = [
  ['llama-bpe', (p) => p.includes("(?i:'s|'t|'re|'ve|'m|'ll|'d)") && p.includes('\\p{N}{1,3}')],
  ['qwen2', (p) => p.includes("(?i:'s|'t|'re|'ve|'m|'ll|'d)") && p.includes('\\p{N}|')],
];

function preTokenizerName(pre: unknown): string | null {
  const json = JSON.stringify(pre ?? null);
  const split = /"pattern":\{"Regex":("(?:[^"\\]|\\.)*")/.exec(json);
  if (!split) return json.includes('"ByteLevel"') ? 'gpt-2' : null;
  const pattern = JSON.parse(split[1]) as string;
  return PRE_TOKENIZERS.find(([, t]) => t(pattern))?.[0] ?? null;
}

/** GPT-2 style: tokens by id from the tokenizer, merges from tokenizer.json or merges.txt. */
function bpeVocab(dir: string, tok: Tokenizer, vocabSize: number): RawVocab {
  let merges: string[];
  let pre: string | null = 'gpt-2';
  if (tok.source === 'tokenizer.json') {
    const j = readJson(join(dir, 'tokenizer.json'));
    const model = j.model as { type?: string; merges?: (string | [string, string])[]; byte_fallback?: boolean };
    // older tokenizer.json files leave model.type out; merges make it BPE
    const type = model.type ?? (model.merges ? 'BPE' : undefined);
    if (type !== 'BPE' || model.byte_fallback) throw new Error(`${join(dir, 'tokenizer.json')}: a ${model.byte_fallback ? 'byte-fallback BPE' : String(type)} tokenizer without tokenizer.model is not exported to GGUF yet (byte-level BPE and SentencePiece tokenizer.model are)`);
    merges = (model.merges ?? []).map((m) => (Array.isArray(m) ? m.join(' ') : m));
    pre = preTokenizerName(j.pre_tokenizer);
  } else {
    merges = readFileSync(join(dir, 'merges.txt'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#version'));
  }
  const tokens: string[] = [], types: number[] = [];
  // ids may be sparse (added tokens past the base vocabulary, special tokens taken out of it, so
  // tok.length undercounts): walk every id the model's embedding has, and any added beyond it
  const last = Math.max(vocabSize, tok.length, ...[...tok.addedTokens.keys()].map((id) => id + 1));
  for (let id = 0; id < last; id++) {
    const added = tok.addedTokens.get(id), text = tok.convertIdsToTokens([id])[0];
    tokens.push(text ?? `[PAD${id}]`);
    types.push(text === undefined ? TokenType.UNUSED : added ? (added.special ? TokenType.CONTROL : TokenType.USER_DEFINED) : TokenType.NORMAL);
  }
  while (tokens.length > vocabSize && types.at(-1) === TokenType.UNUSED) [tokens.pop(), types.pop()];
  return { model: 'gpt2', tokens, types, merges, pre: pre ?? undefined };
}

/** SentencePiece: pieces, scores and types from tokenizer.model, added tokens after them. */
function spmVocab(dir: string, tok: Tokenizer): RawVocab {
  const file = join(dir, 'tokenizer.model');
  const m = parseSentencePieceModel(readFileSync(file), file);
  const tokens = m.pieces.map((p) => p.piece), types = m.pieces.map((p) => p.type), scores = m.pieces.map((p) => p.score);
  for (const [id, t] of [...tok.addedTokens].sort((a, b) => a[0] - b[0])) {
    if (id < tokens.length) continue; // an added token that names an existing piece
    while (tokens.length < id) [tokens.push(`[PAD${tokens.length}]`), types.push(TokenType.UNUSED), scores.push(-1000)];
    tokens.push(t.content); types.push(t.special ? TokenType.CONTROL : TokenType.USER_DEFINED); scores.push(-1000);
  }
  return { model: 'llama', tokens, types, scores };
}

/** Renames every later copy of a token string; llama.cpp refuses a vocabulary with duplicates. */
function makeUnique(v: RawVocab, warnings: string[]): void {
  const seen = new Map<string, number>();
  const renamed: string[] = [];
  v.tokens.forEach((t, id) => {
    if (!seen.has(t)) return void seen.set(t, id);
    let name = `[DUP${id}]${t}`;
    while (seen.has(name)) name = `[DUP${id}]${name}`;
    seen.set(name, id);
    v.tokens[id] = name;
    renamed.push(`${id} ${JSON.stringify(t)} (first at ${seen.get(t)}) -> ${JSON.stringify(name)}`);
  });
  if (renamed.length) warnings.push(`the vocabulary repeats ${renamed.length} token string(s); llama.cpp refuses duplicates, so the later ids were renamed (their ids still work, their text changes): ${renamed.slice(0, 5).join('; ')}${renamed.length > 5 ? '; ...' : ''}`);
}

/**
 * The tokenizer.* metadata for a model folder's tokenizer, padded to `vocabSize` entries.
 * @example vocabExport('./SmolLM2-135M', tok, 49152).kv // [['tokenizer.ggml.model', 'gpt2'], ...]
 */
export function vocabExport(dir: string, tok: Tokenizer, vocabSize: number): VocabExport {
  const warnings: string[] = [];
  const v = existsSync(join(dir, 'tokenizer.model')) ? spmVocab(dir, tok) : tok.source === 'tokenizer.json' || tok.source === 'vocab.json' ? bpeVocab(dir, tok, vocabSize)
    : (() => { throw new Error(`${dir}: a ${tok.source} tokenizer is not exported to GGUF (tokenizer.json byte-level BPE, vocab.json + merges.txt and tokenizer.model are)`); })();
  if (v.tokens.length > vocabSize) throw new Error(`${dir}: the tokenizer has ${v.tokens.length} tokens but the model's vocab_size is ${vocabSize}; llama.cpp needs one embedding row per token`);
  while (v.tokens.length < vocabSize) [v.tokens.push(`[PAD${v.tokens.length}]`), v.types.push(TokenType.UNUSED), v.scores?.push(-1000)];
  makeUnique(v, warnings);
  if (v.model === 'gpt2' && !v.pre) warnings.push(`${dir}: the pre-tokenizer is not one llama.cpp names; written as 'default', so llama.cpp may split text differently (token ids given directly are unaffected)`);
  const kv: [string, GgufValue][] = [['tokenizer.ggml.model', gv.str(v.model)]];
  if (v.model === 'gpt2') kv.push(['tokenizer.ggml.pre', gv.str(v.pre ?? 'default')]);
  kv.push(['tokenizer.ggml.tokens', gv.strings(v.tokens)], ['tokenizer.ggml.token_type', gv.i32s(v.types)]);
  if (v.scores) kv.push(['tokenizer.ggml.scores', gv.f32s(v.scores)]);
  if (v.merges) kv.push(['tokenizer.ggml.merges', gv.strings(v.merges)]);
  const ids: [string, number | null][] = [['bos', tok.bosTokenId], ['eos', tok.eosTokenId], ['unknown', tok.unkTokenId], ['padding', tok.padTokenId]];
  for (const [k, id] of ids) if (id !== null) kv.push([`tokenizer.ggml.${k}_token_id`, gv.u32(id)]);
  kv.push(['tokenizer.ggml.add_bos_token', gv.bool(tok.addBosToken)], ['tokenizer.ggml.add_eos_token', gv.bool(tok.addEosToken)]);
  const template = tok.chatTemplate();
  if (template !== undefined) kv.push(['tokenizer.chat_template', gv.str(template)]);
  for (const t of tok.chatTemplates) if (t.name !== 'default' && t.template !== template) kv.push([`tokenizer.chat_template.${t.name}`, gv.str(t.template)]);
  return { kv, warnings };
}
