// Whisper greedy generation against transformers 4.44.2's generate() on the tiny random model:
// the ids with generation_config's forced prompt (en, transcribe, notimestamps) and with
// language='fr', task='translate'; every step's processed scores (suppress_tokens at all steps,
// begin_suppress_tokens at the first: -inf exactly where transformers has it, the rest within
// 1e-4 of the peak); language detection picks the language token with the largest first-step
// logit; generation frees everything it allocates.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { readJson } from '../../src/io/hf_folder.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { type WhisperForConditionalGeneration, loadWhisper } from '../../src/models/whisper.js';
import { type WhisperGenerationConfig, whisperGenerate, whisperGenerationConfig } from '../../src/models/whisper_generate.js';
import { transcribe } from '../../src/models/whisper_transcribe.js';
import { assertClose } from '../helpers.js';
import { fixture } from '../fixtures.js';

const fx = fixture('audio', 'models', 'whisper-tiny-random');
const int64s = (t: k.Tensor): number[] => Array.from(t.toTypedArray() as BigInt64Array, Number);

/** The model, its generation config, the goldens file and the golden input features. */
function setup(): { model: WhisperForConditionalGeneration; g: WhisperGenerationConfig; gold: SafetensorsFile; features: k.Tensor } {
  const model = loadWhisper(fx.path);
  const g = whisperGenerationConfig(readJson(join(fx.path, 'generation_config.json')), 'generation_config.json');
  const gold = new SafetensorsFile(join(fx.path, 'goldens.safetensors'));
  return { model, g, gold, features: gold.tensor('input_features') };
}

function teardown(s: ReturnType<typeof setup>): void {
  s.features.dispose();
  s.model.dispose();
  s.gold.close();
}

test('greedy ids and scores equal transformers (forced prompt, and fr/translate)', { skip: fx.skip }, () => {
  const s = setup();
  const { model, g, gold, features } = s;
  const en = whisperGenerate(model, features, g, { maxNewTokens: 12, returnScores: true });
  assert.deepEqual(en.sequence, int64s(gold.tensor('generate_ids')));
  assert.equal(en.promptLength, 4);
  const want = gold.tensor('generate_scores').toFloat32Array(); // [12, 1, 1015]
  const finite = want.filter(Number.isFinite);
  const peak = finite.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  assert.equal(en.scores.length, 12);
  en.scores.forEach((row, step) => {
    const w = want.subarray(step * 1015, (step + 1) * 1015);
    assert.deepEqual(row.map((v) => (Number.isFinite(v) ? 0 : 1)), w.map((v) => (Number.isFinite(v) ? 0 : 1)), `step ${step}: suppressed ids`);
    assertClose(row.map((v) => (Number.isFinite(v) ? v : 0)), w.map((v) => (Number.isFinite(v) ? v : 0)), { atol: 1e-4 * peak, rtol: 0, what: `scores step ${step}` });
  });
  const fr = whisperGenerate(model, features, g, { maxNewTokens: 12, language: 'fr', task: 'translate' });
  assert.deepEqual(fr.sequence, int64s(gold.tensor('generate_ids_fr_translate')));
  teardown(s);
});

test('without a language the most likely language token after <|startoftranscript|> is used', { skip: fx.skip }, () => {
  const s = setup();
  const { model, g, gold, features } = s;
  // the expected language from the full forward pass (no cache): logits of [sot] over the language ids
  const logits = k.noGrad(() => k.tidy(() => model.decode(k.tensor([[1001n]]), model.encode(features)).toFloat32Array()));
  const langIds = Object.values(g.langToId);
  const best = langIds.reduce((b, id) => (logits[id] > logits[b] ? id : b), langIds[0]);
  const detected = whisperGenerate(model, features, { ...g, forcedDecoderIds: [] }, { maxNewTokens: 2 });
  assert.deepEqual(detected.sequence.slice(0, 4), [1001, best, 1010, 1014]);
  // and the cached decoding equals the uncached forward pass on the same prefix
  const prefix = detected.sequence;
  const full = k.noGrad(() => k.tidy(() => model.decode(k.tensor([prefix.map(BigInt)]), model.encode(features)).select(1, prefix.length - 2).toFloat32Array()));
  assert.equal(full.indexOf(Math.max(...full.filter((_, i) => !g.suppressTokens.includes(i)))), prefix[prefix.length - 1]);
  assert.throws(() => whisperGenerate(model, features, g, { language: 'xx' }), /language 'xx' is not in this model's lang_to_id \(.*<\|en\|>.*\)/);
  teardown(s);
});

test('generation frees what it allocates (encoder output, caches, step tensors)', { skip: fx.skip }, () => {
  const s = setup();
  const { model, g, gold, features } = s;
  whisperGenerate(model, features, g, { maxNewTokens: 3 }); // warm-up: first-use caches
  const before = k.memory.stats().current.total;
  whisperGenerate(model, features, g, { maxNewTokens: 5 });
  whisperGenerate(model, features, { ...g, forcedDecoderIds: [] }, { maxNewTokens: 5 });
  assert.equal(k.memory.stats().current.total, before);
  teardown(s);
});

test('transcribe: audio longer than 30 s is decoded as consecutive 30 s windows', { skip: fx.skip }, () => {
  const model = loadWhisper(fx.path);
  const g = whisperGenerationConfig(readJson(join(fx.path, 'generation_config.json')), 'generation_config.json');
  k.tidy(() => {
    const clip = k.loadAudio(join(fx.path, '..', '..', 'clips', 'speech_16k_s16.wav')).samples.reshape([-1]);
    const long = k.cat(Array.from({ length: 13 }, () => clip)); // 13 x 2.78 s = 36 s
    const r = transcribe(model, long, g, { maxNewTokens: 3 });
    // the random model never emits <|endoftext|>: 3 tokens per window; window 1 starts like the clip alone
    assert.equal(r.windows, 2);
    assert.deepEqual(r.tokens.slice(0, 3), transcribe(model, k.cat(Array.from({ length: 11 }, () => clip)).narrow(0, 0, 480000), g, { maxNewTokens: 3 }).tokens);
    assert.equal(r.tokens.length, 6);
  });
  model.dispose();
});
