// loadPretrained on speech folders: a Whisper folder (architectures WhisperForConditionalGeneration)
// and an EnCodec folder come back as the same models loadWhisper / loadEncodec build (every tensor
// equal; those loaders are checked against transformers' goldens in whisper_fixture and
// encodec_fixture), with the same parameters frozen, the tokenizer and generation config beside
// them; the text-only consumers (loadCausalLM, embedding backbones) refuse them by name.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import type { Module } from '../../src/nn/module.js';
import { fixture } from '../fixtures.js';

const fx = fixture('audio', 'models');

/** name -> [values, requiresGrad] of every parameter */
function weightsOf(m: Module): Map<string, [number[], boolean]> {
  return new Map(m.namedParameters().map(([n, p]) => [n, [Array.from(p.toFloat32Array()), p.requiresGrad]]));
}

test('loadPretrained(whisper folder) is loadWhisper\'s model, tokenizer and generation config included', { skip: fx.skip }, async () => {
  const dir = join(fx.path, 'whisper-tiny-random');
  const p = await k.loadPretrained(dir);
  const ref = k.loadWhisper(dir);
  assert.ok(p.model instanceof k.WhisperForConditionalGeneration);
  assert.ok(k.isSpeechModel(p.model));
  assert.deepEqual(weightsOf(p.model), weightsOf(ref));
  assert.equal(p.model.model.encoder.embed_positions.weight.requiresGrad, false, 'the sinusoidal table stays frozen');
  assert.equal(p.model.model.decoder.embed_tokens.weight.requiresGrad, true);
  assert.equal(p.model.training, false, 'eval mode after loading');
  assert.equal(p.generationConfig?.decoder_start_token_id, 1001);
  assert.deepEqual(p.tokenizer!.encode(' the', { addSpecialTokens: false }), (await k.loadTokenizer(dir)).encode(' the', { addSpecialTokens: false }));
  p.model.dispose();
  ref.dispose();
});

test('loadPretrained(encodec folder) is loadEncodec\'s model, every weight frozen', { skip: fx.skip }, async () => {
  const dir = join(fx.path, 'encodec-tiny-random');
  const p = await k.loadPretrained(dir);
  const ref = k.loadEncodec(dir);
  assert.ok(p.model instanceof k.EncodecModel);
  assert.deepEqual(weightsOf(p.model), weightsOf(ref));
  assert.ok(p.model.parameters().every((w) => !w.requiresGrad), 'the codec is inference only');
  assert.equal(p.tokenizer, null);
  p.model.dispose();
  ref.dispose();
});

test('text-only consumers refuse speech models by name', { skip: fx.skip }, async () => {
  const whisper = join(fx.path, 'whisper-tiny-random');
  await assert.rejects(k.loadCausalLM(whisper), new RegExp(`${whisper}: model_type 'whisper' is a speech model .*not a causal LM`));
  await assert.rejects(k.loadCausalLM(join(fx.path, 'encodec-tiny-random')), /model_type 'encodec' is a speech model/);
  const p = await k.loadPretrained(whisper);
  assert.throws(() => k.embeddings.asBackbone(p.model, whisper), /WhisperForConditionalGeneration is a speech model, not a text embedding backbone/);
  p.model.dispose();
});
