// Named adapters (PEFT's key names in memory and in files, switching gives each adapter's exact
// logits, disabling gives the base's, deleting restores the layers), modules_to_save (round trip,
// merge, tied embeddings as peft 0.12 treats them), Phi-3's fused projections, and bad adapters.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { assignValues } from '../../src/nn/module.js';
import { assertClose } from '../helpers.js';
import { fixture } from '../fixtures.js';

const llama = fixture('models', 'llama');
const tied = fixture('models', 'llama-tied-rope-llama3');
const phi3 = fixture('models', 'phi3');
const peftAdapter = fixture('lora', 'llama-lora-q-v');
const tmp = (): string => mkdtempSync(join(tmpdir(), 'kestrel-adapters-'));

const IDS = [[1, 22, 54, 73, 60, 18, 7, 9], [3, 4, 5, 6, 7, 8, 9, 10]];

async function load(dir: string, opts: k.LoadOptions = {}): Promise<k.CausalLM> {
  const { model } = await k.loadCausalLM(dir, opts);
  assert.ok(model instanceof k.CausalLM);
  return model;
}

function logits(model: k.CausalLM, ids = IDS): Float32Array {
  return k.tidy(() => k.noGrad(() => model.forward({ inputIds: k.tensor(ids, { dtype: 'int64' }) }).logits!.toFloat32Array()));
}

/** Makes every adapter matrix and saved copy of `name` non-trivial (B starts at zero). */
function perturb(model: k.nn.Module, name = 'default', seed = 1): void {
  const gen = new k.Generator(seed);
  for (const [key, t] of k.lora.adapterTensors(model, name))
    k.tidy(() => k.noGrad(() => assignValues(t, t.add(k.randn([...t.shape], { generator: gen, backend: t.backendName }).mul(key.includes('lora_') ? 0.05 : 0.01)))));
}

test('named adapters: PEFT keys, each adapter exact after switching, disabled = base, delete', { skip: llama.skip || peftAdapter.skip }, async () => {
  const wantBase = logits(await load(llama.path));
  const wantA = logits(await load(llama.path, { adapter: peftAdapter.path }));
  // adapter b: every projection (q/k/v and gate/up run as fused groups) and a saved lm_head
  const mb = await load(llama.path);
  const config: k.lora.LoraConfig = { r: 2, alpha: 4, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'], modulesToSave: ['lm_head'] };
  k.lora.injectLora(mb, config);
  perturb(mb);
  const wantB = logits(mb);
  const dirB = tmp();
  k.lora.saveAdapter(mb, dirB, config, { baseModel: llama.path });
  using file = new SafetensorsFile(join(dirB, 'adapter_model.safetensors'));
  assert.ok(file.has('base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight'), 'file keys drop the adapter name');
  assert.ok(file.has('base_model.model.lm_head.weight'), 'modules_to_save under the module path');
  assert.equal(file.names.length, 2 * 2 * 7 + 1);

  const m = await load(llama.path);
  k.lora.loadAdapter(m, peftAdapter.path, { name: 'a' });
  k.lora.loadAdapter(m, dirB, { name: 'b' });
  const sd = m.stateDict();
  for (const key of ['model.layers.0.self_attn.q_proj.lora_A.a.weight', 'model.layers.0.self_attn.q_proj.lora_B.b.weight', 'model.layers.0.self_attn.k_proj.lora_A.b.weight',
    'model.layers.0.self_attn.q_proj.base_layer.weight', 'lm_head.original_module.weight', 'lm_head.modules_to_save.b.weight'])
    assert.ok(key in sd, `in-memory key ${key}`);
  assert.deepEqual(k.lora.adapterNames(m), ['a', 'b']);
  assert.equal(k.lora.activeAdapter(m), 'a', 'loading a second adapter does not switch to it');
  assert.deepEqual(logits(m), wantA);
  k.lora.setAdapter(m, 'b');
  assert.deepEqual(logits(m), wantB);
  k.lora.setAdapter(m, null);
  assert.deepEqual(logits(m), wantBase);
  k.lora.setAdapter(m, 'a');
  assert.deepEqual(logits(m), wantA);
  assert.throws(() => k.lora.setAdapter(m, 'c'), /setAdapter: no adapter named 'c' \(the model has 'a', 'b'\)/);

  k.lora.deleteAdapter(m, 'a');
  assert.equal(k.lora.activeAdapter(m), 'b', 'deleting the active adapter activates the next');
  assert.ok(!Object.keys(m.stateDict()).some((key) => key.includes('.a.')));
  assert.deepEqual(logits(m), wantB);
  k.lora.deleteAdapter(m, 'b');
  assert.equal(k.lora.loraLayers(m).size, 0);
  assert.deepEqual(Object.keys(m.stateDict()).sort(), Object.keys((await load(llama.path)).stateDict()).sort(), 'plain model keys again');
  assert.deepEqual(logits(m), wantBase);
});

test('LoRA on every projection: gradients reach every adapter, and merging gives the same logits (llama groups, phi3 fused)', { skip: llama.skip || phi3.skip }, async () => {
  for (const [dir, targets] of [[llama.path, ['q_proj', 'k_proj', 'v_proj', 'gate_proj', 'up_proj']], [phi3.path, ['qkv_proj', 'gate_up_proj', 'o_proj', 'down_proj']]] as const) {
    const m = await load(dir);
    k.lora.injectLora(m, { r: 4, alpha: 8, targetModules: [...targets] });
    perturb(m);
    m.train();
    k.tidy(() => m.forward({ inputIds: k.tensor(IDS, { dtype: 'int64' }), labels: k.tensor(IDS, { dtype: 'int64' }) }).loss!.backward());
    const trainable = m.namedParameters().filter(([, p]) => p.requiresGrad);
    assert.equal(trainable.length, 2 * targets.length * m.config.numLayers);
    for (const [name, p] of trainable) assert.ok(p.grad && p.grad.abs().max().item() > 0, `${dir}: ${name} got a gradient`);
    m.eval();
    const before = logits(m);
    k.lora.mergeLora(m);
    const scale = before.reduce((a, x) => Math.max(a, Math.abs(x)), 0);
    assertClose(logits(m), before, { atol: 1e-5 * scale, rtol: 1e-4, what: `${dir} merged` });
  }
});

test('modules_to_save: trainable copies, originals frozen, saved under peft names, loaded back, merged', { skip: llama.skip }, async () => {
  const m = await load(llama.path);
  const config: k.lora.LoraConfig = { r: 2, alpha: 2, targetModules: ['q_proj'], modulesToSave: ['lm_head', 'embed_tokens'] };
  k.lora.injectLora(m, config);
  const trainable = m.namedParameters().filter(([, p]) => p.requiresGrad).map(([n]) => n);
  assert.ok(trainable.includes('lm_head.modules_to_save.default.weight') && trainable.includes('model.embed_tokens.modules_to_save.default.weight'));
  assert.equal(trainable.length, 2 * m.config.numLayers + 2);
  const opt = new k.optim.AdamW(m.parameters().filter((p) => p.requiresGrad), { lr: 1e-2 });
  m.train();
  k.tidy(() => m.forward({ inputIds: k.tensor(IDS, { dtype: 'int64' }), labels: k.tensor(IDS, { dtype: 'int64' }) }).loss!.backward());
  const sd = m.stateDict();
  assert.equal(sd['lm_head.original_module.weight'].grad, null, 'the original lm_head stays frozen');
  assert.equal(sd['model.embed_tokens.original_module.weight'].grad, null, 'the original embedding stays frozen');
  assert.ok(sd['lm_head.modules_to_save.default.weight'].grad);
  opt.step();
  m.eval();
  const trained = logits(m);
  assert.notDeepEqual(trained, logits(await load(llama.path)));

  const dir = tmp();
  k.lora.saveAdapter(m, dir, config, { baseModel: llama.path });
  const written = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8'));
  assert.deepEqual(written.modules_to_save, ['lm_head', 'embed_tokens']);
  using f = new SafetensorsFile(join(dir, 'adapter_model.safetensors'));
  assert.deepEqual(f.names.filter((n) => !n.includes('lora_')).sort(), ['base_model.model.lm_head.weight', 'base_model.model.model.embed_tokens.weight']);

  const again = await load(llama.path, { adapter: dir });
  assert.deepEqual(logits(again), trained);
  const n = k.lora.mergeLora(again);
  assert.equal(n, m.config.numLayers);
  assert.ok(again.lm_head instanceof k.nn.Linear && again.model.embed_tokens instanceof k.nn.Embedding, 'merged: the trained copies replace the modules');
  assert.deepEqual(again.lm_head.weight.toFloat32Array(), sd['lm_head.modules_to_save.default.weight'].toFloat32Array());
  assertClose(logits(again), trained, { atol: 1e-5, rtol: 1e-4, what: 'merged modules_to_save' });
});

test('modules_to_save on a tied embedding: as peft 0.12, the head keeps the original; merge refuses', { skip: tied.skip }, async () => {
  const m = await load(tied.path);
  const warned = once(process, 'warning');
  k.lora.injectLora(m, { r: 2, alpha: 2, targetModules: ['q_proj'], modulesToSave: ['embed_tokens'] });
  const [w] = (await warned) as [Error];
  assert.match(w.message, /tied to the LM head: as in peft, the head keeps the frozen original weight/);
  const before = logits(m);
  const copy = k.lora.adapterTensors(m).get('base_model.model.model.embed_tokens.weight')!;
  const row = (id: number, delta: number): void => k.tidy(() => k.noGrad(() => assignValues(k.narrow(copy, 0, id, 1), k.narrow(copy, 0, id, 1).add(delta))));
  row(100, 1); // a token not in the input: only a head reading the copy would see it
  assert.deepEqual(logits(m), before, 'the tied head reads the original weight');
  row(22, 1); // a token in the input: the input embedding is the trained copy
  assert.notDeepEqual(logits(m), before);
  assert.throws(() => k.lora.mergeLora(m), /embed_tokens' is a trained copy of an embedding tied to the LM head/);
});

test('bad adapters and names are clear errors, and a failed load leaves the model as it was', { skip: llama.skip }, async () => {
  const m = await load(llama.path);
  const dir = tmp();
  const cfg: k.lora.LoraConfig = { r: 2, alpha: 2, targetModules: ['q_proj'] };
  k.lora.injectLora(m, cfg);
  k.lora.saveAdapter(m, dir, cfg, { baseModel: 'org/SmolLM2-135M' });
  k.lora.deleteAdapter(m, 'default');

  const fresh = await load(llama.path);
  const warned = once(process, 'warning');
  k.lora.loadAdapter(fresh, dir, { baseModel: llama.path });
  assert.match(((await warned) as [Error])[0].message, /adapter_config.json: the adapter was trained on 'org\/SmolLM2-135M' but is being loaded into '.*llama'/);
  assert.throws(() => k.lora.loadAdapter(fresh, dir), /already has an adapter named 'default'/);

  const config = JSON.parse(readFileSync(join(dir, 'adapter_config.json'), 'utf8'));
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ ...config, r: 3 }));
  assert.throws(() => k.lora.loadAdapter(m, dir), /'base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight' is \[2, 64\] but the model's layer needs \[3, 64\]/);
  assert.equal(k.lora.loraLayers(m).size, 0, 'the failed load was rolled back');
  writeFileSync(join(dir, 'adapter_config.json'), JSON.stringify({ ...config, modules_to_save: ['score'] }));
  assert.throws(() => k.lora.loadAdapter(m, dir), /modules_to_save 'score' matched no Linear or Embedding/);
  assert.throws(() => k.lora.setAdapter(m, 'default'), /no adapter named 'default' \(the model has none\)/);
  assert.throws(() => k.lora.deleteAdapter(m, 'x'), /deleteAdapter: no adapter named 'x'/);
  const lin = new k.nn.Linear(8, 4);
  assert.throws(() => new k.lora.LoraLinear(lin, { r: 0, alpha: 1 }), /rank 0 must be a positive integer no larger than the layer \(4 x 8\)/);
  assert.throws(() => new k.lora.LoraLinear(lin, { r: 5, alpha: 1 }), /rank 5 must be a positive integer/);
  assert.throws(() => new k.lora.LoraLinear(lin, { r: 2, alpha: 1, dropout: 1 }), /dropout must be in \[0, 1\)/);
});
