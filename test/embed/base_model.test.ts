// Decoder embedding checkpoints saved as base models (LlamaModel / Qwen2Model: `embed_tokens.*`,
// `layers.N.*`, `norm.weight`, no `model.` prefix, no lm_head, as e5-mistral, gte-Qwen2 and
// Qwen3-Embedding ship). The folder is the fixture's own weights with the prefix dropped, so the
// right answer is known twice over: the hidden state equals transformers' final-norm
// hidden_states.2, and every embedding equals the one the same weights give loaded as a CausalLM.
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile, saveSafetensors } from '../../src/io/safetensors.js';
import { buildModel } from '../../src/models/registry.js';
import { assertClose, runCli } from '../helpers.js';
import { fixture } from '../fixtures.js';
import { writeWordVocab } from './tiny_embedder.js';

const E = k.embeddings;
const TEXTS = ['paris is a large old city', 'what is the capital of france', 'rome', 'the main city of peru'];
const readConfig = (dir: string): Record<string, unknown> => JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;

/** The fixture's decoder weights without the `model.` prefix and lm_head, config architectures [arch], and a word vocab.txt. */
async function baseFolder(fixtureDir: string, arch: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-base-'));
  const { model } = await k.loadPretrained(fixtureDir);
  assert.ok(model instanceof k.CausalLM);
  k.noGrad(() => saveSafetensors(join(dir, 'model.safetensors'), model.model.stateDict(), { format: 'pt' }));
  model.dispose();
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...readConfig(fixtureDir), architectures: [arch] }));
  writeWordVocab(dir);
  return dir;
}

function rowsOf(t: k.Tensor): number[][] {
  const v = Array.from(t.toTypedArray() as BigInt64Array, Number);
  return Array.from({ length: t.shape[0] }, (_, b) => v.slice(b * t.shape[1], (b + 1) * t.shape[1]));
}

for (const [family, arch] of [['llama', 'LlamaModel'], ['qwen2', 'Qwen2Model']] as const) {
  const fx = fixture('models', family);
  test(`${family}: a ${arch} folder loads as a base model whose hidden state is transformers' and whose embeddings equal the CausalLM's; it saves back in the same keys`, { skip: fx.skip }, async () => {
    const dir = await baseFolder(fx.path, arch);
    const { model: base } = await k.loadPretrained(dir);
    assert.ok(base instanceof k.DecoderBaseModel, `${arch} builds DecoderBaseModel, got ${base.constructor.name}`);
    assert.deepEqual(Object.keys(base.stateDict()).filter((n) => !/^(embed_tokens|layers\.\d+|norm)\./.test(n)), []);
    // transformers' final-norm hidden state (golden hidden_states.2) at every attended position
    using g = new SafetensorsFile(join(fx.path, 'golden.safetensors'));
    const mask = rowsOf(g.tensor('attention_mask'));
    const h = k.noGrad(() => base.forward({ inputIds: g.tensor('input_ids'), attentionMask: g.tensor('attention_mask') }).hidden.toFloat32Array());
    const want = g.tensor('hidden_states.2').toFloat32Array();
    const D = base.config.hiddenSize;
    const T = mask[0].length;
    const attended = (x: Float32Array): number[] => mask.flatMap((row, b) => row.flatMap((m, t) => (m ? Array.from(x.subarray((b * T + t) * D, (b * T + t + 1) * D)) : [])));
    assertClose(attended(h), attended(want), { atol: 1e-4, rtol: 1e-4, what: `${arch} final hidden state` });
    base.dispose();

    // the same weights as a CausalLM (the fixture folder, tokenizer from the base folder) embed identically
    for (const pooling of ['mean', 'lasttoken'] as const) {
      const fromBase = await E.loadEmbedder(dir, { pooling });
      const fromLM = await E.loadEmbedder(fx.path, { pooling, tokenizer: dir });
      assert.ok(fromBase.backbone instanceof k.DecoderBaseModel && fromLM.backbone instanceof k.CausalLM);
      const [a, b] = [fromBase, fromLM].map((m) => E.encode(m, TEXTS, { batchSize: 3 }));
      a.forEach((v, i) => assert.deepEqual(v, b[i], `${pooling} text ${i}: base model and CausalLM disagree`));

      // saved in sentence-transformers' layout with the base keys and the config as read; reloads to the same vectors
      const out = join(dir, `saved-${pooling}`);
      E.saveEmbedder(fromBase, out);
      using saved = new SafetensorsFile(join(out, 'model.safetensors'));
      using orig = new SafetensorsFile(join(dir, 'model.safetensors'));
      assert.deepEqual(saved.names.sort(), orig.names.sort());
      assert.deepEqual(readConfig(out).architectures, [arch]);
      const back = await E.loadEmbedder(out);
      assert.equal(back.settings.pooling, pooling);
      E.encode(back, TEXTS, { batchSize: 3 }).forEach((v, i) => assert.deepEqual(v, a[i], `${pooling} text ${i} after save + reload`));
      for (const m of [fromBase, fromLM, back]) m.dispose();
    }
  });
}

test('training through a base model: every weight gets the gradient the CausalLM\'s model.* weight gets', { skip: fixture('models', 'llama').skip }, async () => {
  const fx = fixture('models', 'llama').path;
  const dir = await baseFolder(fx, 'LlamaModel');
  const [fromBase, fromLM] = [await E.loadEmbedder(dir), await E.loadEmbedder(fx, { tokenizer: dir })];
  for (const m of [fromBase, fromLM]) {
    const e = m.embed(TEXTS.slice(0, 3)); // [3, 64]
    k.tidy(() => e.mul(k.tensor(Array.from({ length: e.numel }, (_, i) => Math.sin(i)), { shape: [...e.shape] })).sum().backward());
  }
  const lm = new Map(fromLM.backbone.namedParameters());
  const base = fromBase.backbone.namedParameters();
  assert.equal(base.length, lm.size - 1, 'the CausalLM has lm_head besides the base weights');
  for (const [name, p] of base) {
    const twin = lm.get(`model.${name}`);
    assert.ok(twin?.grad && p.grad, `${name}: a gradient on both`);
    assert.deepEqual(p.grad.toFloat32Array(), twin.grad.toFloat32Array(), `${name}: gradients differ`);
  }
  assert.equal(lm.get('lm_head.weight')?.grad ?? null, null, 'the head plays no part in an embedding');
  fromBase.dispose();
  fromLM.dispose();
});

test('base weights under a *ForCausalLM config (Qwen3-Embedding ships so) load as a base model; loadCausalLM refuses a base model by name', { skip: fixture('models', 'llama').skip }, async () => {
  const dir = await baseFolder(fixture('models', 'llama').path, 'LlamaForCausalLM');
  const { model } = await k.loadPretrained(dir);
  assert.ok(model instanceof k.DecoderBaseModel);
  model.dispose();
  await assert.rejects(k.loadCausalLM(dir), /base model without an LM head .* not a causal LM/);
});

test('kestrel embed reads a base-model folder with --pooling max,lasttoken: its lines equal k.embeddings.encode', { skip: fixture('models', 'qwen2').skip }, async () => {
  const dir = await baseFolder(fixture('models', 'qwen2').path, 'Qwen2Model');
  const input = join(dir, 'texts.jsonl');
  writeFileSync(input, TEXTS.map((text) => JSON.stringify({ text })).join('\n') + '\n');
  const output = join(dir, 'vectors.jsonl');
  // two modes concatenated (--pooling takes a comma-separated list): last token then max, width 2 x 64
  const r = runCli(['embed', '--model', dir, '--input', input, '--output', output, '--pooling', 'max,lasttoken', '--batch-size', '2']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /embedded 4 texts \(dim 128\)/);
  const got = readFileSync(output, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { embedding: number[] }).embedding);
  const model = await E.loadEmbedder(dir, { pooling: ['max', 'lasttoken'] });
  E.encode(model, TEXTS, { batchSize: 2 }).forEach((v, i) => assertClose(got[i], v, { atol: 1e-6, rtol: 1e-5, what: `line ${i + 1}` }));
  model.dispose();
  const bad = runCli(['embed', '--model', dir, '--input', input, '--output', output, '--pooling', 'mean,median']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /--pooling: pooling must be one or more distinct modes of cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken, got \[mean, median\]/);
});

test('buildModel: LlamaModel -> DecoderBaseModel, GPT2LMHeadModel stays a causal LM, GPT2Model is refused by name', () => {
  const llama = { model_type: 'llama', architectures: ['LlamaModel'], vocab_size: 32, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2 };
  const m = buildModel(llama, 'llama/config.json');
  assert.ok(m instanceof k.DecoderBaseModel);
  m.dispose();
  const gpt2 = { model_type: 'gpt2', vocab_size: 32, n_embd: 8, n_layer: 1, n_head: 2, n_positions: 16 };
  const lm = buildModel({ ...gpt2, architectures: ['GPT2LMHeadModel'] }, 'gpt2/config.json');
  assert.ok(lm instanceof k.Gpt2LMHeadModel);
  lm.dispose();
  assert.throws(() => buildModel({ ...gpt2, architectures: ['GPT2Model'] }, 'gpt2/config.json'), /gpt2\/config\.json: GPT2Model \(GPT-2 without its LM head\) is not supported/);
});
