// Whisper timestamp tokens. The fixture goldens hold no timestamp generation, so the rules of
// transformers' WhisperTimeStampLogitsProcessor (4.44) are checked two ways: (1) applyTimestampRules
// on small hand-made logits, each expected mask worked out by hand from the rule it exercises;
// (2) greedy generation with timestamps from a random Whisper whose vocabulary has the 1501
// timestamp tokens (the fixture's config with vocab_size 1015 + 1501; the fixture itself has none
// and is refused by name), whose every output must obey the rules as sequences: it starts with a
// timestamp no later than max_initial_timestamp_index, never holds <|notimestamps|>, timestamps
// never decrease, never three in a row, a lone closing timestamp is followed by a timestamp or
// <|endoftext|>; and `kestrel transcribe --timestamps --json` turns those ids into timed segments.
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { readJson } from '../../src/io/hf_folder.js';
import { whisperConfig } from '../../src/models/whisper.js';
import { applyTimestampRules, timestampSegments } from '../../src/models/whisper_timestamps.js';
import { runCli } from '../helpers.js';
import { fixture } from '../fixtures.js';

// a toy vocabulary: text 0..3, <|endoftext|> 4, another special 5, <|notimestamps|> 6, timestamps 7..11
const R = { timestampBegin: 7, noTimestampsTokenId: 6, eosTokenId: 4, maxInitialTimestampIndex: 2 };
const allowed = (logits: number[], generated: number[]): number[] =>
  [...applyTimestampRules(Float32Array.from(logits), generated, R)].flatMap((v, i) => (v === -Infinity ? [] : [i]));
const FLAT = [3, 3, 3, 3, 3, 3, 3, 0, 0, 0, 0, 0]; // text far likelier than all timestamps together (3 > ln 5)

test('timestamp rules on hand-worked logits', () => {
  // first step: only timestamps, none after <|0.00|> + max_initial_timestamp_index (7, 8, 9)
  assert.deepEqual(allowed(FLAT, []), [7, 8, 9]);
  // after <|t7|> text: text, eos and the other special stay; <|notimestamps|> never; timestamps only after 7
  assert.deepEqual(allowed(FLAT, [7, 1]), [0, 1, 2, 3, 4, 5, 8, 9, 10, 11]);
  // after <|t7|> text <|t9|> (a segment's end): no text below eos; the next segment may start at 9 again
  assert.deepEqual(allowed(FLAT, [7, 1, 9]), [4, 5, 9, 10, 11]);
  // after <|t7|> text <|t9|> <|t9|> (a closed pair): text only, no timestamps
  assert.deepEqual(allowed(FLAT, [7, 1, 9, 9]), [0, 1, 2, 3, 4, 5]);
  // timestamps together likelier than the best text token: 0.5 + ln 5 ≈ 2.11 > 1, so text is masked
  // although each timestamp (0.5) is less likely than text token 0 (1)
  assert.deepEqual(allowed([1, 0, 0, 0, 0, 0, 0, 0.5, 0.5, 0.5, 0.5, 0.5], [7, 1]), [8, 9, 10, 11]);
  // ... and not when they are not: -2 + ln 4 ≈ -0.61 < 1
  assert.deepEqual(allowed([1, 0, 0, 0, 0, 0, 0, -2, -2, -2, -2, -2], [7, 1]), [0, 1, 2, 3, 4, 5, 8, 9, 10, 11]);
});

test('timestampSegments pairs <|a|> text <|b|>, 0.02 s a step, offset by the window', () => {
  assert.deepEqual(timestampSegments([7, 1, 2, 9, 9, 3, 12], 7, 30), [{ start: 30, end: 30.04, tokens: [1, 2] }, { start: 30.04, end: 30.1, tokens: [3] }]);
  // an unclosed segment ends where it starts
  assert.deepEqual(timestampSegments([8, 1], 7), [{ start: 0.02, end: 0.02, tokens: [1] }]);
});

const fx = fixture('audio');
const FIXTURE_MODEL = (): string => join(fx.path, 'models', 'whisper-tiny-random');
const TIMESTAMPS = 1501; // <|0.00|> ... <|30.00|>

/**
 * The fixture Whisper with the timestamp tokens added (their embedding rows drawn at the
 * checkpoint's init_std 0.2, so that the random model writes timestamps and text), saved as a folder.
 */
function timestampWhisper(dir: string): string {
  const raw = { ...readJson(join(FIXTURE_MODEL(), 'config.json')), vocab_size: 1015 + TIMESTAMPS };
  const gen = { ...readJson(join(FIXTURE_MODEL(), 'generation_config.json')), max_initial_timestamp_index: 50 };
  const base = k.loadWhisper(FIXTURE_MODEL());
  const model = new k.WhisperForConditionalGeneration(whisperConfig(raw, 'config.json'));
  k.manualSeed(7);
  k.tidy(() => {
    const sd = base.stateDict();
    const embed = 'model.decoder.embed_tokens.weight';
    model.loadStateDict({ ...sd, [embed]: k.cat([sd[embed], k.randn([TIMESTAMPS, 64]).mul(0.2)], 0) });
  });
  k.saveWhisper(dir, model, raw, gen);
  base.dispose();
  model.dispose();
  for (const f of ['vocab.json', 'merges.txt', 'added_tokens.json', 'special_tokens_map.json', 'tokenizer_config.json', 'preprocessor_config.json'])
    copyFileSync(join(FIXTURE_MODEL(), f), join(dir, f));
  return dir;
}

test('generation with timestamps obeys the rules; the fixture (no timestamp tokens) is refused', { skip: fx.skip }, () => {
  const dir = timestampWhisper(mkdtempSync(join(tmpdir(), 'kestrel-whisper-ts-')));
  const model = k.loadWhisper(dir);
  const g = k.whisperGenerationConfig(readJson(join(dir, 'generation_config.json')), 'generation_config.json');
  const begin = g.noTimestampsTokenId! + 1;
  const { samples } = k.loadAudio(join(fx.path, 'clips', 'speech_16k_s16.wav'), { sampleRate: 16000, mono: true });
  const features = k.tidy(() => k.audio.whisperLogMel(samples.reshape([-1]), { nMels: 80 }).reshape([1, 80, 3000]));
  const out = k.whisperGenerate(model, features, g, { language: 'en', timestamps: true, maxNewTokens: 40 });
  assert.deepEqual(out.sequence.slice(0, out.promptLength), [1001, 1002, 1010], 'the prompt has no <|notimestamps|>');
  const t = out.tokens;
  const isTs = (id: number): boolean => id >= begin;
  assert.ok(isTs(t[0]) && t[0] <= begin + 50, `the first token ${t[0]} is a timestamp <= <|1.00|>`);
  assert.ok(!t.includes(g.noTimestampsTokenId!));
  const stamps = t.filter(isTs);
  assert.ok(stamps.every((s, i) => i === 0 || s >= stamps[i - 1]), `timestamps never decrease: ${stamps}`);
  t.forEach((id, i) => {
    if (i >= 2 && isTs(t[i - 1]) && isTs(t[i - 2])) assert.ok(!isTs(id), `three timestamps in a row at ${i}: ${t}`);
    if (i >= 2 && isTs(t[i - 1]) && !isTs(t[i - 2])) assert.ok(isTs(id) || id >= g.eosTokenId, `after a segment's end, ${id} at ${i}: ${t}`);
  });
  assert.ok(stamps.length >= 2 && t.some((id) => !isTs(id)), `the random model writes segments: ${t}`);
  // the same through the CLI: segments in seconds, from those ids
  const r = runCli(['transcribe', '--model', dir, join(fx.path, 'clips', 'speech_16k_s16.wav'), '--language', 'en', '--timestamps', '--max-new-tokens', '40', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const line = JSON.parse(r.stdout) as { tokens: number[]; segments: { start: number; end: number }[] };
  assert.deepEqual(line.tokens, t.filter((id) => id !== g.eosTokenId));
  assert.deepEqual(line.segments.map((s) => [s.start, s.end]), timestampSegments(line.tokens, begin).map((s) => [s.start, s.end]));
  const fixtureModel = k.loadWhisper(FIXTURE_MODEL());
  const fixtureG = k.whisperGenerationConfig(readJson(join(FIXTURE_MODEL(), 'generation_config.json')), 'generation_config.json');
  assert.throws(() => k.whisperGenerate(fixtureModel, features, fixtureG, { timestamps: true }), /timestamps need timestamp tokens after no_timestamps_token_id \(1014\), but the vocabulary ends at 1014/);
  fixtureModel.dispose();
  features.dispose();
  samples.dispose();
  model.dispose();
});
