// The PEFT 0.12 LoRA adapter fixture (r 4, alpha 8, q_proj and v_proj of the llama fixture):
// logits, loss, every LoRA gradient, greedy ids, and the merged model's weights and logits;
// saveAdapter -> loadAdapter round trip; mismatched adapters are clear errors.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { assertClose } from '../helpers.js';
import { fixture } from '../fixtures.js';

const adapter = fixture('lora', 'llama-lora-q-v');
const base = fixture('models', 'llama');

function near(got: k.Tensor, want: k.Tensor, rel: number, what: string): void {
  const scale = want.toFloat32Array().reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  assertClose(got, want, { atol: rel * scale, rtol: rel, what });
}

test('PEFT adapter: logits, loss, LoRA gradients, generation, merge', { skip: adapter.skip || base.skip }, async () => {
  const { model } = await k.loadCausalLM(base.path);
  assert.ok(model instanceof k.CausalLM);
  const config = k.lora.loadAdapter(model, adapter.path);
  assert.deepEqual([config.r, config.alpha], [4, 8]);
  using g = new SafetensorsFile(join(adapter.path, 'golden.safetensors'));
  const t = (n: string): k.Tensor => g.tensor(n);
  k.tidy(() => {
    model.train();
    const out = model.forward({ inputIds: t('input_ids'), attentionMask: t('attention_mask'), labels: t('labels') });
    near(out.logits!, t('logits'), 1e-4, 'logits');
    assertClose([out.loss!.item()], [t('loss').item()], { atol: 0, rtol: 1e-5, what: 'loss' });
    out.loss!.backward();
  });
  const trainable = model.namedParameters().filter(([, p]) => p.requiresGrad);
  assert.equal(trainable.length, 8, 'only the LoRA matrices train');
  for (const [name, p] of trainable) {
    const key = `grad.base_model.model.${name}`; // in-memory names carry the adapter name, as peft's do
    near(p.grad!, t(key), 1e-3, key);
  }
  model.eval();
  const gen = await model.generate(t('gen.prompt_ids'), { maxNewTokens: 12, temperature: 0 });
  assert.deepEqual(gen.toArray(), t('gen.output_ids').toArray());

  const dir = mkdtempSync(join(tmpdir(), 'kestrel-adapter-'));
  k.lora.saveAdapter(model, dir, config, { baseModel: base.path });
  const again = (await k.loadCausalLM(base.path, { adapter: dir })).model;
  const original = k.lora.loraLayers(model);
  for (const [path, l] of k.lora.loraLayers(again)) {
    const o: k.lora.LoraLinear = original.get(path)!;
    assert.deepEqual(l.lora_A.get('default').weight.toTypedArray(), o.lora_A.get('default').weight.toTypedArray(), path);
    assert.deepEqual(l.lora_B.get('default').weight.toTypedArray(), o.lora_B.get('default').weight.toTypedArray(), path);
  }
  again.dispose();

  assert.equal(k.lora.mergeLora(model), 4);
  const sd = model.stateDict();
  for (const n of ['model.layers.0.self_attn.q_proj.weight', 'model.layers.1.self_attn.v_proj.weight']) near(sd[n], t(`merged.${n}`), 1e-5, `merged ${n}`);
  k.tidy(() => near(model.forward({ inputIds: t('input_ids'), attentionMask: t('attention_mask') }).logits!, t('logits_merged'), 1e-4, 'merged logits'));
  model.dispose();
});

test('adapters that do not fit the model are clear errors', { skip: adapter.skip || base.skip }, async () => {
  const { model } = await k.loadCausalLM(base.path);
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-bad-adapter-'));
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 4, lora_alpha: 8, target_modules: ['w_in'] }));
  writeFileSync(join(dir, 'adapter_model.safetensors'), Buffer.from([2, 0, 0, 0, 0, 0, 0, 0, 123, 125]));
  assert.throws(() => k.lora.loadAdapter(model, dir), /target modules \[w_in\] matched no Linear layer/);
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 0, lora_alpha: 8, target_modules: ['q_proj'] }));
  assert.throws(() => k.lora.loadAdapter(model, dir), /'r' must be a positive integer/);
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'PREFIX_TUNING', r: 4 }));
  assert.throws(() => k.lora.loadAdapter(model, dir), /peft_type "PREFIX_TUNING" is not supported/);
  assert.throws(() => k.lora.injectLora(model, { r: 1000, alpha: 8, targetModules: ['q_proj'] }), /rank 1000 must be a positive integer no larger than the layer/);
  model.dispose();
});
