// Text-to-speech learns (issue 19 part 4): on espeak-ng speech of three words (two voices) coded
// by the tiny EnCodec at 1.5 kbps (3 codebooks), a tiny random Llama fine-tuned on text -> codec
// tokens brings its loss on the audio tokens from about ln(vocab) (random) to well below, and
// greedy generation for a training word reproduces most of that word's codes (memorisation is
// the correct answer on training data); the saved folder reloads and continues training.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { readAsrManifest } from '../../src/data/asr_manifest.js';
import { loadEncodec } from '../../src/models/encodec.js';
import { loadCausalLM } from '../../src/models/load.js';
import { CausalLM } from '../../src/models/causal_lm.js';
import { generateCodes } from '../../src/infer/tts_speak.js';
import { encodeAudioCached, ttsPrompt } from '../../src/train/tts_data.js';
import { trainTts } from '../../src/train/tts.js';
import { readTtsMeta } from '../../src/train/tts_model.js';
import * as k from '../../src/index.js';
import { assertClose } from '../helpers.js';
import { fixture } from '../fixtures.js';
import { makeSpeech, makeTinyLm } from './tts_helpers.js';

const codecFx = fixture('audio', 'models', 'encodec-tiny-random');
const whisperFx = fixture('audio', 'models', 'whisper-tiny-random');

test('tts: the loss on codec tokens falls and greedy generation reproduces a training word', { skip: codecFx.skip || whisperFx.skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-tts-'));
  const records = await readAsrManifest(makeSpeech(join(dir, 'speech')));
  const codec = loadEncodec(codecFx.path);
  const { model, hfConfig, tokenizer } = await loadCausalLM(makeTinyLm(join(dir, 'lm'), whisperFx.path));
  assert.ok(model instanceof CausalLM && tokenizer);
  const out = join(dir, 'run');
  const run = await trainTts(model, hfConfig, tokenizer, codec, records, { output: out, bandwidth: 1.5, steps: 120, lr: 3e-3, batchSize: 3, lora: null });
  const first = run.losses[0];
  const last = Math.min(...run.losses.slice(-5));
  // a random model's cross-entropy over 1015 + 3 x 64 + 2 ids is about ln(1209) = 7.1
  assert.ok(first > 6, `first loss ${first} should be near ln(1209) = 7.1`);
  assert.ok(last < 0.3 * first, `loss should fall well below its start: ${first} -> ${last}`);
  process.stderr.write(`tts loss ${first.toFixed(3)} -> ${last.toFixed(3)}\n`);
  const meta = run.meta;
  assert.deepEqual([meta.offset, meta.codebooks, meta.codebookSize], [1015, 3, 64]);
  // greedy generation of the first word against its own codes (from the run's cache)
  const want = encodeAudioCached(codec, records[0].audio, { bandwidth: 1.5, cacheDir: join(out, 'codec_cache') });
  const got = await generateCodes(run.model, ttsPrompt(tokenizer, records[0].text, meta), meta, { maxFrames: want.frames + 10 });
  assert.equal(got.frames, want.frames, 'end-of-audio after as many frames as the clip');
  const same = want.codes.filter((c, i) => got.codes[i] === c).length;
  assert.ok(same >= 0.8 * want.codes.length, `greedy codes should reproduce most of the clip's: ${same} of ${want.codes.length}`);
  process.stderr.write(`greedy codes equal to the clip: ${same} of ${want.codes.length} (${got.frames} frames)\n`);
  run.model.dispose();
  // the folder reloads as a plain LM with the grown vocabulary and the layout, and trains further
  const again = await loadCausalLM(out);
  assert.equal(again.model.config.vocabSize, 1015 + 3 * 64 + 2);
  assert.deepEqual(readTtsMeta(again.hfConfig, 'config.json'), meta);
  const more = await trainTts(again.model as CausalLM, again.hfConfig, tokenizer, codec, records, { output: join(dir, 'run2'), bandwidth: 1.5, steps: 2, lr: 1e-3, batchSize: 3, lora: null });
  assert.ok(more.losses[0] < 0.5 * first, `training further starts from the trained model: ${more.losses[0]}`);
  more.model.dispose();
  codec.dispose();
});

test('tts: LoRA on a model whose head is tied to its embedding trains the audio rows and saves a merged folder', { skip: codecFx.skip || whisperFx.skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-tts-tied-'));
  const records = await readAsrManifest(makeSpeech(join(dir, 'speech')));
  const codec = loadEncodec(codecFx.path);
  const { model, hfConfig, tokenizer } = await loadCausalLM(makeTinyLm(join(dir, 'lm'), whisperFx.path, { tied: true }));
  assert.ok(model instanceof CausalLM && tokenizer && !model.lm_head);
  const lora = { r: 4, alpha: 8, dropout: 0, useRslora: false, targetModules: 'all-linear' as const };
  const run = await trainTts(model, hfConfig, tokenizer, codec, records, { output: join(dir, 'run'), bandwidth: 1.5, steps: 20, lr: 3e-3, batchSize: 3, lora });
  assert.ok(run.losses[19] < run.losses[0] - 1, `loss falls: ${run.losses[0]} -> ${run.losses[19]}`);
  // the saved folder is a plain model (no LoRA keys) whose forward equals the trained, merged one
  const ids = k.tensor([[5, 1207, 1020, 1100]], { dtype: 'int64' });
  const want = run.model.forward({ inputIds: ids }).logits!;
  const again = await loadCausalLM(join(dir, 'run'));
  assert.ok(Object.keys(again.model.stateDict()).every((key) => !key.includes('lora')));
  assertClose(again.model.forward({ inputIds: ids }).logits!, want, { atol: 1e-5, rtol: 1e-5, what: 'reloaded logits' });
  again.model.dispose();
  run.model.dispose();
  codec.dispose();
});
