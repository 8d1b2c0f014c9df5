// Whisper against transformers 4.44.2's WhisperForConditionalGeneration (the tiny random model of
// ../shared/fixtures/audio/models/whisper-tiny-random): the encoder output and logits within 1e-4
// of their peak, the loss within 1e-5, every one of the 88 parameter gradients within 1e-3 of its
// peak (the tolerances; the README observes ~6e-6 in float64), with the features computed
// by our own whisperLogMel from the clip, and decoder_input_ids built from the labels as
// transformers' shift_tokens_right does. The frozen sinusoidal table gets no gradient.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { loadWhisper, saveWhisper, shiftTokensRight, sinusoids } from '../../src/models/whisper.js';
import { readJson } from '../../src/io/hf_folder.js';
import { assertClose } from '../helpers.js';
import { fixture } from '../fixtures.js';
import { nearGolden } from '../audio/golden.js';

const fx = fixture('audio', 'models', 'whisper-tiny-random');

test('whisper: encoder, logits, loss and every gradient equal transformers', { skip: fx.skip }, () => {
  const model = loadWhisper(fx.path).train();
  using g = new SafetensorsFile(join(fx.path, 'goldens.safetensors'));
  using clips = new SafetensorsFile(join(fx.path, '..', '..', 'goldens.safetensors'));
  k.tidy(() => {
    // the features from our own extractor (itself within 2e-5 of the golden input_features)
    const features = k.audio.whisperLogMel(clips.tensor('wav.speech_16k_s16').reshape([-1])).reshape([1, 80, 3000]);
    nearGolden(features, g.tensor('input_features'), 'input_features');
    const labels = g.tensor('labels');
    assertClose(shiftTokensRight(labels, 1000, 1001), g.tensor('decoder_input_ids'), { atol: 0, rtol: 0, what: 'decoder_input_ids' });
    const out = model.forward({ inputFeatures: g.tensor('input_features'), labels });
    nearGolden(out.encoderLastHiddenState, g.tensor('encoder_last_hidden_state'), 'encoder_last_hidden_state');
    nearGolden(out.logits, g.tensor('logits'), 'logits');
    assertClose(out.loss!, g.tensor('loss'), { atol: 1e-5, rtol: 0, what: 'loss' });
    out.loss!.backward();
    let checked = 0;
    for (const [name, p] of model.namedParameters()) {
      if (name === 'model.encoder.embed_positions.weight') {
        assert.equal(p.grad, null, 'the sinusoidal table is frozen');
        continue;
      }
      nearGolden(p.grad!, g.tensor(`grad.${name}`), `grad.${name}`, 1e-3);
      checked++;
    }
    assert.equal(checked, 88);
    // explicit decoder ids give the same logits as ids built from the labels
    const again = model.forward({ inputFeatures: g.tensor('input_features'), decoderInputIds: g.tensor('decoder_input_ids') });
    assertClose(again.logits, out.logits, { atol: 0, rtol: 0, what: 'logits with explicit decoder_input_ids' });
  });
  model.dispose();
});

test('whisper: the sinusoidal position table a fresh model builds equals the checkpoint\'s', { skip: fx.skip }, () => {
  using w = new SafetensorsFile(join(fx.path, 'model.safetensors'));
  // HF builds it in float32; its exp and ours differ by an ulp at some channels, which moves an
  // angle near t = 1500 by one float32 ulp of 1500 (1.2e-4): the bound below
  assertClose(sinusoids(1500, 64), w.readArray('model.encoder.embed_positions.weight') as Float32Array, { atol: 2e-4, rtol: 0, what: 'sinusoids' });
});

test('whisper: wrong feature shapes and folders are named', { skip: fx.skip }, () => {
  const model = loadWhisper(fx.path);
  k.tidy(() => {
    assert.throws(() => model.encode(k.zeros([1, 80, 1000])), /input features must be \[B, 80, 3000\] \(30 s of log-mel frames\), got \[1, 80, 1000\]/);
  });
  model.dispose();
  assert.throws(() => loadWhisper(join(fx.path, '..', '..', 'clips')), /config\.json/);
});

test('whisper: saveWhisper writes a folder that loads back to the same logits, with the checkpoint\'s keys', { skip: fx.skip }, () => {
  const model = loadWhisper(fx.path);
  const out = mkdtempSync(join(tmpdir(), 'kestrel-whisper-save-'));
  saveWhisper(out, model, readJson(join(fx.path, 'config.json')), readJson(join(fx.path, 'generation_config.json')));
  using original = new SafetensorsFile(join(fx.path, 'model.safetensors'));
  using saved = new SafetensorsFile(join(out, 'model.safetensors'));
  assert.deepEqual([...saved.names].sort(), [...original.names].sort());
  const again = loadWhisper(out);
  using g = new SafetensorsFile(join(fx.path, 'goldens.safetensors'));
  k.noGrad(() => k.tidy(() => {
    const a = model.forward({ inputFeatures: g.tensor('input_features'), labels: g.tensor('labels') });
    const b = again.forward({ inputFeatures: g.tensor('input_features'), labels: g.tensor('labels') });
    assertClose(b.logits, a.logits, { atol: 0, rtol: 0, what: 'reloaded logits' });
  }));
  model.dispose();
  again.dispose();
});
