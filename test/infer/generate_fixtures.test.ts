// Greedy generation against transformers' generate() on every decoder fixture: the single
// prompt and the left-padded batch give exactly the same ids, and every step's scores (the
// KV-cache path) are within 1e-4 of the reference; Llama's eos case pads finished rows. Runs on
// every native device (cpu, and cuda on a GPU or the emulator).
import { ALL_DEVICES, type Device, skipUnless } from '../devices.js';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { assertClose } from '../helpers.js';
import { fixture } from '../fixtures.js';

const FIXTURES = ['llama', 'llama-tied-rope-llama3', 'mistral-sliding-window', 'qwen2', 'gemma', 'gemma2', 'phi3', 'mixtral', 'qwen2-moe', 'gpt2'];

async function check(device: Device, model: k.CausalLM | k.Gpt2LMHeadModel, g: SafetensorsFile, prefix: string, extra: k.GenerateOptions = {}, promptFrom = prefix): Promise<void> {
  const t = (n: string): k.Tensor => g.tensor(`${prefix}.${n}`);
  const p = (n: string): string => `${promptFrom}.${n}`;
  const on = (x: k.Tensor): k.Tensor => k.tidy(() => x.to(device));
  const ids = on(g.has(p('input_ids')) ? g.tensor(p('input_ids')) : g.tensor(p('prompt_ids')));
  const mask = g.has(p('attention_mask')) ? on(g.tensor(p('attention_mask'))) : null;
  const want = t('output_ids');
  const scores = t('scores'); // [steps, B, V]
  const steps: Float32Array[][] = [];
  const out = await model.generate(ids, { maxNewTokens: 12, attentionMask: mask, temperature: 0, onScores: (_, s) => steps.push(s.map((x) => x.slice())), ...extra });
  assert.deepEqual(out.toArray(), want.toArray(), `${prefix} ids`);
  const w = scores.toFloat32Array();
  const scale = w.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  const got = Float32Array.from(steps.flatMap((rows) => rows.flatMap((r) => [...r])));
  assertClose(got, w.subarray(0, got.length), { atol: 1e-4 * scale, rtol: 1e-4, what: `${prefix} scores` });
  for (const x of [ids, mask, want, scores, out]) x?.dispose();
}

for (const name of FIXTURES)
  for (const device of ALL_DEVICES) {
  const fx = fixture('models', name);
  describe(`${name} generate() on ${device} matches transformers`, { skip: fx.skip || skipUnless(device) }, () => {
    test('greedy: single prompt and left-padded batch', async () => {
      const { model, generationConfig } = await k.loadCausalLM(fx.path, { backend: device });
      using g = new SafetensorsFile(join(fx.path, 'golden.safetensors'));
      // Gemma 2's reference ran without a cache; its sliding-window layer still applies per step
      await check(device, model, g, 'gen', { generationConfig });
      await check(device, model, g, 'genb', { generationConfig });
      if (g.has('genb_eos.output_ids')) await check(device, model, g, 'genb_eos', { eosTokenId: 60, padTokenId: 0 }, 'genb');
      model.dispose();
    });
  });
}

for (const device of ALL_DEVICES)
  test(`a bfloat16 model generates on ${device} (the KV cache takes its keys' dtype)`, { skip: fixture('models', 'llama').skip || skipUnless(device) }, async () => {
    const { model } = await k.loadCausalLM(fixture('models', 'llama').path, { backend: device });
    model.to('bfloat16');
    const cache = new k.KVCache(model.config.numLayers, 1, model.config.numKvHeads, 8, model.config.headDim, { backend: device });
    k.noGrad(() => k.tidy(() => model.forward({ inputIds: k.tensor([[1, 2, 3]], { dtype: 'int64', backend: device }), cache })));
    assert.equal(cache.keys[0]?.dtype, 'bfloat16');
    cache.dispose();
    const out = await model.generate(k.tensor([[1, 2, 3]], { dtype: 'int64', backend: device }), { maxNewTokens: 4, temperature: 0 });
    assert.deepEqual(out.shape, [1, 7]);
    model.dispose();
  });
