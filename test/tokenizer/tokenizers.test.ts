// Tokenizers against ../shared/fixtures/tokenizers (transformers 4.44.2 slow tokenizers): for every
// test string, ids with and without special tokens, tokens, and both decodes equal the golden values;
// plus special-token properties, tokenizer_config.json handling and bad-input errors.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { type LoadTokenizerOptions, type Tokenizer, loadTokenizer as load } from '../../src/tokenizer/index.js';
import { fixture } from '../fixtures.js';

const gpt2 = fixture('tokenizers', 'gpt2');
const llama = fixture('tokenizers', 'llama2-sentencepiece');
const bert = fixture('tokenizers', 'bert-uncased');
const tmp = mkdtempSync(join(tmpdir(), 'kestrel-tok-'));

interface GoldenCase {
  text: string;
  ids: number[];
  ids_no_special?: number[];
  tokens_no_special?: string[];
  decoded?: string;
  decoded_skip_special?: string;
}

/** Fixture tokenizers are loaded once per (folder, options): parsing them is most of the test time. */
const loaded = new Map<string, Promise<Tokenizer>>();
function loadTokenizer(dir: string, options: LoadTokenizerOptions = {}): Promise<Tokenizer> {
  if (dir.startsWith(tmp)) return load(dir, options);
  const key = dir + JSON.stringify(options);
  if (!loaded.has(key)) loaded.set(key, load(dir, options));
  return loaded.get(key)!;
}

const golden = (dir: string): any => JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8'));

/** Compares every recorded field of every case; reports all mismatches at once. */
function checkGolden(tok: Tokenizer, cases: GoldenCase[]): void {
  const bad: string[] = [];
  let compared = 0;
  for (const c of cases) {
    const got: Record<string, unknown> = {
      ids: tok.encode(c.text),
      ids_no_special: tok.encode(c.text, { addSpecialTokens: false }),
      tokens_no_special: tok.tokenize(c.text),
      decoded: tok.decode(c.ids),
      decoded_skip_special: tok.decode(c.ids, { skipSpecialTokens: true }),
    };
    for (const [k, want] of Object.entries(c)) {
      if (k === 'text') continue;
      compared++;
      if (JSON.stringify(got[k]) !== JSON.stringify(want)) bad.push(`${JSON.stringify(c.text)} ${k}: got ${JSON.stringify(got[k])}, want ${JSON.stringify(want)}`);
    }
  }
  assert.ok(compared >= cases.length, 'nothing compared');
  assert.deepEqual(bad, [], `${bad.length} of ${compared} golden values differ:\n${bad.join('\n')}`);
}

/** A scratch copy of a fixture folder (selected files) with an optional tokenizer_config.json. */
function scratch(name: string, from: string, files: string[], config?: unknown): string {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  for (const f of files) copyFileSync(join(from, f), join(dir, f));
  if (config !== undefined) writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  return dir;
}

describe('tokenizers: golden values from transformers 4.44.2', () => {
  test('gpt2 via tokenizer.json', { skip: gpt2.skip }, async () => {
    const tok = await loadTokenizer(gpt2.path);
    assert.equal(tok.source, 'tokenizer.json');
    checkGolden(tok, golden(gpt2.path).cases);
  });

  test('gpt2 via vocab.json + merges.txt', { skip: gpt2.skip }, async () => {
    const tok = await loadTokenizer(gpt2.path, { source: 'vocab.json' });
    assert.equal(tok.source, 'vocab.json');
    checkGolden(tok, golden(gpt2.path).cases);
  });

  const variants: [string, LoadTokenizerOptions][] = [
    ['legacy_false', { legacy: false }],
    ['legacy_true', { legacy: true }],
    ['legacy_false_add_eos', { legacy: false, addEosToken: true }],
  ];
  for (const [variant, options] of variants) {
    test(`llama2 tokenizer.model, ${variant}`, { skip: llama.skip }, async () => {
      const tok = await loadTokenizer(llama.path, options);
      assert.equal(tok.source, 'tokenizer.model');
      checkGolden(tok, golden(llama.path).variants[variant].cases);
    });
  }

  test('bert-uncased vocab.txt', { skip: bert.skip }, async () => {
    const tok = await loadTokenizer(bert.path);
    assert.equal(tok.source, 'vocab.txt');
    checkGolden(tok, golden(bert.path).cases);
  });
});

describe('tokenizers: special tokens and settings', () => {
  test('gpt2 special tokens', { skip: gpt2.skip }, async () => {
    for (const source of ['tokenizer.json', 'vocab.json'] as const) {
      const tok = await loadTokenizer(gpt2.path, { source });
      assert.equal(tok.vocabSize, golden(gpt2.path).settings.vocab_size);
      assert.equal(tok.length, 50257);
      if (source === 'vocab.json') {
        // GPT2Tokenizer's class defaults (tokenizer.json + this config name no roles).
        assert.equal(tok.bosToken, '<|endoftext|>');
        assert.equal(tok.eosTokenId, 50256);
        assert.deepEqual(tok.eosTokenIds, [50256]);
      }
      assert.equal(tok.addBosToken, false);
      assert.equal(tok.modelMaxLength, 1024);
      assert.deepEqual(tok.convertIdsToTokens([15496, 995]), ['Hello', 'Ġworld']);
      assert.deepEqual(tok.convertTokensToIds(['Hello', 'not-a-token']), [15496, undefined]);
    }
  });

  test('llama special tokens and add_bos/add_eos', { skip: llama.skip }, async () => {
    const tok = await loadTokenizer(llama.path, { legacy: false });
    assert.equal(tok.vocabSize, 32000);
    assert.deepEqual([tok.unkTokenId, tok.bosTokenId, tok.eosTokenId, tok.padTokenId], [0, 1, 2, null]);
    assert.deepEqual([tok.bosToken, tok.eosToken, tok.unkToken], ['<s>', '</s>', '<unk>']);
    assert.equal(tok.addBosToken, true);
    assert.equal(tok.addEosToken, false);
    assert.deepEqual(tok.allSpecialTokens, ['<s>', '</s>', '<unk>']);
    const noBos = scratch('llama-nobos', llama.path, ['tokenizer.model'], { add_bos_token: false, add_eos_token: true, legacy: false });
    const t2 = await loadTokenizer(noBos);
    assert.deepEqual(t2.encode('Hello world'), [15043, 3186, 2]);
    assert.equal(t2.addBosToken, false);
    assert.equal(t2.addEosToken, true);
  });

  test('bert special tokens', { skip: bert.skip }, async () => {
    const tok = await loadTokenizer(bert.path);
    assert.equal(tok.vocabSize, 30522);
    assert.deepEqual([tok.padTokenId, tok.unkTokenId, tok.clsTokenId, tok.sepTokenId, tok.maskTokenId], [0, 100, 101, 102, 103]);
    assert.equal(tok.bosTokenId, null);
  });

  test('added tokens from tokenizer_config.json (SentencePiece)', { skip: llama.skip }, async () => {
    const dir = scratch('llama-added', llama.path, ['tokenizer.model'], {
      legacy: false, pad_token: '<unk>',
      added_tokens_decoder: {
        32000: { content: '<|im_start|>', lstrip: false, rstrip: false, normalized: false, single_word: false, special: true },
        32001: { content: '<tool>', lstrip: false, rstrip: true, normalized: false, single_word: false, special: false },
      },
      additional_special_tokens: ['<|im_start|>'],
    });
    const tok = await loadTokenizer(dir);
    assert.equal(tok.length, 32002);
    assert.equal(tok.padTokenId, 0);
    const ids = tok.encode('<|im_start|>user Hi<tool>   x');
    assert.equal(ids[0], 1);
    assert.equal(ids[1], 32000);
    assert.ok(ids.includes(32001));
    // rstrip: the spaces after <tool> are eaten, so "x" follows it directly. The lone "▁" is
    // legacy=False's prefix, which LlamaTokenizer drops only before a *special* token.
    assert.deepEqual(tok.tokenize('<tool>   x'), ['▁', '<tool>', 'x']);
    assert.deepEqual(tok.tokenize('<|im_start|>x'), ['<|im_start|>', 'x']);
    assert.equal(tok.decode(ids, { skipSpecialTokens: true }), 'user Hi <tool> x');
    // Added tokens outside the base vocabulary are decoded apart and joined with spaces (4.44 _decode).
    assert.equal(tok.decode(ids), '<s> <|im_start|> user Hi <tool> x');
    assert.equal(tok.addedTokens.get(32001)?.content, '<tool>');
  });

  test('add_bos_token in tokenizer_config.json overrides a tokenizer.json post-processor', { skip: gpt2.skip }, async () => {
    const dir = scratch('gpt2-bos', gpt2.path, ['tokenizer.json'], { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', add_bos_token: true });
    const tok = await loadTokenizer(dir);
    assert.deepEqual(tok.encode('Hello world'), [50256, 15496, 995]);
    assert.deepEqual(tok.encode('Hello world', { addSpecialTokens: false }), [15496, 995]);
    assert.equal(tok.decode([50256, 15496, 995], { skipSpecialTokens: true }), 'Hello world');
  });
});

describe('tokenizers: bad input', () => {
  test('a folder without tokenizer files', async () => {
    const dir = join(tmp, 'empty');
    mkdirSync(dir, { recursive: true });
    await assert.rejects(loadTokenizer(dir), /no tokenizer files \(looked for tokenizer\.json/);
    await assert.rejects(loadTokenizer(join(tmp, 'missing')), /missing is not a directory/);
  });

  test('corrupt JSON names the file', { skip: gpt2.skip }, async () => {
    const dir = scratch('bad-json', gpt2.path, []);
    writeFileSync(join(dir, 'tokenizer.json'), '{"model": {"type": "BPE", ');
    await assert.rejects(loadTokenizer(dir), /tokenizer\.json: invalid JSON/);
    writeFileSync(join(dir, 'tokenizer.json'), '[]');
    await assert.rejects(loadTokenizer(dir), /tokenizer\.json: expected a JSON object/);
    const cfgDir = scratch('bad-config', gpt2.path, ['tokenizer.json']);
    writeFileSync(join(cfgDir, 'tokenizer_config.json'), '{"bos_token": ');
    await assert.rejects(loadTokenizer(cfgDir), /tokenizer_config\.json: invalid JSON/);
    writeFileSync(join(cfgDir, 'tokenizer_config.json'), '{"bos_token": 5}');
    await assert.rejects(loadTokenizer(cfgDir), /tokenizer_config\.json: bos_token must be a string or an AddedToken/);
    writeFileSync(join(cfgDir, 'tokenizer_config.json'), '{"chat_template": 3}');
    await assert.rejects(loadTokenizer(cfgDir), /tokenizer_config\.json: chat_template must be a string or a list/);
    writeFileSync(join(cfgDir, 'tokenizer_config.json'), '{"add_bos_token": "yes"}');
    await assert.rejects(loadTokenizer(cfgDir), /tokenizer_config\.json: add_bos_token must be a boolean/);
  });

  test('GPT-2 files: missing merges.txt, bad vocab.json, bad merges line', { skip: gpt2.skip }, async () => {
    const dir = scratch('gpt2-nomerges', gpt2.path, ['vocab.json']);
    await assert.rejects(loadTokenizer(dir), /has vocab\.json but no merges\.txt/);
    writeFileSync(join(dir, 'merges.txt'), '#version: 0.2\nĠ t\na b c\n');
    await assert.rejects(loadTokenizer(dir), /merges\.txt: line 3 is not a merge/);
    writeFileSync(join(dir, 'vocab.json'), '{"a": "zero"}');
    await assert.rejects(loadTokenizer(dir), /vocab\.json: id of "a" is not a non-negative integer/);
    await assert.rejects(loadTokenizer(gpt2.path, { source: 'vocab.txt' }), /has no vocab\.txt/);
  });

  test('corrupt tokenizer.model names the file', { skip: llama.skip }, async () => {
    const bytes = readFileSync(join(llama.path, 'tokenizer.model'));
    const dir = join(tmp, 'bad-model');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'tokenizer.model'), bytes.subarray(0, 100_001));
    await assert.rejects(loadTokenizer(dir), /tokenizer\.model: corrupt SentencePiece model: (truncated|field 1 at byte \d+ claims)/);
    writeFileSync(join(dir, 'tokenizer.model'), 'this is not a protobuf');
    await assert.rejects(loadTokenizer(dir), /tokenizer\.model: corrupt SentencePiece model/);
    writeFileSync(join(dir, 'tokenizer.model'), Buffer.from([0x0a, 0x05, 0x0a, 0x03, 0xff, 0xfe, 0xfd]));
    await assert.rejects(loadTokenizer(dir), /tokenizer\.model: corrupt SentencePiece model: field 1: invalid UTF-8/);
  });

  test('vocab.txt without its unk token', async () => {
    const dir = join(tmp, 'bad-vocab-txt');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'vocab.txt'), '[PAD]\nhello\n');
    await assert.rejects(loadTokenizer(dir), /vocab\.txt: the unk token "\[UNK\]" is not in the vocabulary/);
  });

  test('decode of an id outside the vocabulary', { skip: llama.skip }, async () => {
    const tok = await loadTokenizer(llama.path, { legacy: false });
    assert.throws(() => tok.decode([1, 99999]), /token id 99999 is outside the vocabulary/);
  });
});
