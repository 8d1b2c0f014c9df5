// The saved folder against sentence-transformers' own save() (SentenceTransformer.save, and
// Pooling/Dense/Normalize.save in sentence-transformers 5.x): the module list, each module's
// folder, file and config keys; a reload gives identical embeddings; batched encode keeps order.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { assertClose } from '../helpers.js';
import { tinyBertFolder } from './tiny_embedder.js';

const E = k.embeddings;
const json = (...p: string[]): unknown => JSON.parse(readFileSync(join(...p), 'utf8'));
const TEXTS = ['paris is a large old city', 'what is the capital of france', 'rome', 'which city is the seat of government in peru'];

test('a model with Dense and Normalize saves in the layout SentenceTransformer(dir) loads, and reloads to identical embeddings', async () => {
  const src = tinyBertFolder('kestrel-st-src-');
  const model = await E.loadEmbedder(src, { pooling: 'cls', normalize: true });
  k.manualSeed(3);
  model.dense = new E.Dense(32, 16, 'tanh');
  Object.assign(model.settings, { prompts: { query: 'what is ', passage: '' }, defaultPromptName: null, maxSeqLength: 24 });
  const out = join(src, 'saved');
  E.saveEmbedder(model, out);

  assert.deepEqual(json(out, 'modules.json'), [
    { idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' },
    { idx: 1, name: '1', path: '1_Pooling', type: 'sentence_transformers.models.Pooling' },
    { idx: 2, name: '2', path: '2_Dense', type: 'sentence_transformers.models.Dense' },
    { idx: 3, name: '3', path: '3_Normalize', type: 'sentence_transformers.models.Normalize' },
  ]);
  // Pooling.config_keys, in its order, with the one mode on
  assert.deepEqual(json(out, '1_Pooling', 'config.json'), {
    word_embedding_dimension: 32, pooling_mode_cls_token: true, pooling_mode_mean_tokens: false, pooling_mode_max_tokens: false,
    pooling_mode_mean_sqrt_len_tokens: false, pooling_mode_weightedmean_tokens: false, pooling_mode_lasttoken: false, include_prompt: true,
  });
  assert.deepEqual(json(out, '2_Dense', 'config.json'), { in_features: 32, out_features: 16, bias: true, activation_function: 'torch.nn.modules.activation.Tanh' });
  using dense = new SafetensorsFile(join(out, '2_Dense', 'model.safetensors'));
  assert.deepEqual(dense.names.sort(), ['linear.bias', 'linear.weight']);
  assert.deepEqual(dense.info('linear.weight').shape, [16, 32]);
  assert.deepEqual(readdirSync(join(out, '3_Normalize')), [], 'Normalize.save writes nothing');
  assert.deepEqual(json(out, 'sentence_bert_config.json'), { max_seq_length: 24, do_lower_case: false });
  const st = json(out, 'config_sentence_transformers.json') as Record<string, unknown>;
  assert.deepEqual(Object.keys(st).sort(), ['__version__', 'default_prompt_name', 'model_type', 'prompts', 'similarity_fn_name']);
  assert.deepEqual(st.prompts, { query: 'what is ', passage: '' });
  assert.equal(st.similarity_fn_name, 'cosine');
  for (const f of ['config.json', 'model.safetensors', 'vocab.txt']) assert.ok(existsSync(join(out, f)), `root ${f}`);

  const back = await E.loadEmbedder(out);
  assert.equal(back.settings.pooling, 'cls');
  assert.equal(back.settings.normalize, true);
  assert.equal(back.settings.maxSeqLength, 24);
  assert.deepEqual(back.settings.prompts, { query: 'what is ', passage: '' });
  const [a, b] = [model, back].map((m) => E.encode(m, TEXTS));
  a.forEach((v, i) => assert.deepEqual(b[i], v, `text ${i} embeds differently after the reload`));
  assert.ok(Math.abs(Math.hypot(...a[0]) - 1) < 1e-5, 'Normalize: unit length');
  // a prompt name puts its text before each input
  assertClose(E.encode(back, ['france'], { promptName: 'query' })[0], E.encode(back, ['what is france'])[0], { atol: 0, rtol: 0 });
  assert.throws(() => E.encode(back, ['x'], { promptName: 'doc' }), /prompt 'doc' is not one of the model's prompts \[query, passage\]/);
  model.dispose();
  back.dispose();
});

test('a plain HF folder loads with mean pooling; batched encode returns embeddings in input order', async () => {
  const src = tinyBertFolder('kestrel-st-plain-');
  const model = await E.loadEmbedder(src);
  assert.equal(model.settings.pooling, 'mean');
  assert.equal(model.settings.normalize, false);
  const one = TEXTS.map((t) => E.encode(model, [t])[0]);
  const batched = E.encode(model, TEXTS, { batchSize: 3 });
  batched.forEach((v, i) => assertClose(v, one[i], { atol: 1e-5, rtol: 1e-4, what: `text ${i}` }));
  const out = join(src, 'saved');
  E.saveEmbedder(model, out);
  assert.deepEqual((json(out, 'modules.json') as { path: string }[]).map((m) => m.path), ['', '1_Pooling']);
  model.dispose();
});

test('several pooling modes are written as their flags, read back concatenated, and checked against a Dense layer', async () => {
  const src = tinyBertFolder('kestrel-st-modes-');
  const model = await E.loadEmbedder(src, { pooling: ['max', 'cls', 'mean_sqrt_len_tokens'] });
  assert.equal(model.dim, 3 * 32, 'three modes of width 32 concatenated');
  const out = join(src, 'saved');
  E.saveEmbedder(model, out);
  // word_embedding_dimension stays the token width; each mode's flag is on (Pooling.get_config_dict)
  assert.deepEqual(json(out, '1_Pooling', 'config.json'), {
    word_embedding_dimension: 32, pooling_mode_cls_token: true, pooling_mode_mean_tokens: false, pooling_mode_max_tokens: true,
    pooling_mode_mean_sqrt_len_tokens: true, pooling_mode_weightedmean_tokens: false, pooling_mode_lasttoken: false, include_prompt: true,
  });
  const back = await E.loadEmbedder(out);
  assert.deepEqual(back.settings.pooling, ['cls', 'max', 'mean_sqrt_len_tokens']);
  // the concatenation is [cls | max | mean_sqrt_len], each equal to that mode alone
  const [all] = E.encode(back, ['paris is a large old city']);
  for (const [i, mode] of (['cls', 'max', 'mean_sqrt_len_tokens'] as const).entries()) {
    back.settings.pooling = mode;
    assert.deepEqual(all.slice(32 * i, 32 * (i + 1)), E.encode(back, ['paris is a large old city'])[0], `${mode} part`);
  }
  back.dispose();
  // a Dense layer must take the pooled width
  k.manualSeed(1);
  model.dense = new E.Dense(32, 8, 'identity');
  const withDense = join(src, 'dense');
  E.saveEmbedder(model, withDense);
  model.dispose();
  await assert.rejects(E.loadEmbedder(withDense), /2_Dense\/config.json: in_features 32 is not the pooled width 96 \(hidden 32 x 3 pooling modes\)/);
  const pooling = join(out, '1_Pooling', 'config.json');
  const off = Object.fromEntries(Object.entries(json(pooling) as Record<string, unknown>).map(([key, v]) => [key, key.startsWith('pooling_mode_') ? false : v]));
  writeFileSync(pooling, JSON.stringify(off));
  await assert.rejects(E.loadEmbedder(out), /1_Pooling\/config.json: no pooling mode is on/);
});

test('unsupported modules are named', async () => {
  const src = tinyBertFolder('kestrel-st-bad-');
  const model = await E.loadEmbedder(src, { normalize: true });
  const out = join(src, 'saved');
  E.saveEmbedder(model, out);
  model.dispose();
  const modules = json(out, 'modules.json') as object[];
  writeFileSync(join(out, 'modules.json'), JSON.stringify([...modules, { idx: 3, name: '3', path: '3_X', type: 'sentence_transformers.models.LayerNorm' }]));
  await assert.rejects(E.loadEmbedder(out), /modules.json: module 3 \(sentence_transformers.models.LayerNorm\): not supported/);
});

test('include_prompt false leaves the prompt tokens out of the pooling, counted as sentence-transformers counts them', async () => {
  const model = await E.loadEmbedder(tinyBertFolder('kestrel-st-prompt-'));
  Object.assign(model.settings, { includePrompt: false, prompts: { query: 'what is ' } });
  const batch = model.tokenize(['france'], model.promptText('query'));
  // [CLS] what is france [SEP]: the prompt alone is [CLS] what is [SEP], less its final special token = 3
  assert.equal(batch.promptLength, 3);
  const got = E.encode(model, ['france'], { promptName: 'query' })[0];
  const h = k.noGrad(() => (model.backbone as k.BertModel).forward({ inputIds: k.tensor(batch.inputIds, { dtype: 'int64' }) }).lastHiddenState.toFloat32Array());
  const D = model.hiddenSize;
  const want = Array.from({ length: D }, (_, d) => (h[3 * D + d] + h[4 * D + d]) / 2);
  assertClose(got, want, { atol: 1e-5, rtol: 1e-4, what: 'mean over france and [SEP]' });
  model.dispose();
});

test('a pooling width or similarity that does not fit the folder is named', async () => {
  const src = tinyBertFolder('kestrel-st-dims-');
  const model = await E.loadEmbedder(src);
  const out = join(src, 'saved');
  E.saveEmbedder(model, out);
  model.dispose();
  const pooling = join(out, '1_Pooling', 'config.json');
  writeFileSync(pooling, JSON.stringify({ ...(json(pooling) as object), word_embedding_dimension: 64 }));
  await assert.rejects(E.loadEmbedder(out), /word_embedding_dimension 64 is not the backbone's hidden size 32/);
  writeFileSync(pooling, JSON.stringify({ ...(json(pooling) as object), word_embedding_dimension: 32 }));
  const st = join(out, 'config_sentence_transformers.json');
  writeFileSync(st, JSON.stringify({ ...(json(st) as object), similarity_fn_name: 'jaccard' }));
  await assert.rejects(E.loadEmbedder(out), /similarity_fn_name "jaccard" is not one of cosine, dot, euclidean, manhattan/);
});

test('max_seq_length cuts a text and keeps the [SEP] the tokenizer appended; right padding fills with [PAD] and mask 0', async () => {
  const model = await E.loadEmbedder(tinyBertFolder('kestrel-st-cut-'));
  model.settings.maxSeqLength = 4;
  // vocab.txt order: [PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4, what 5, is 6, the 7, ...
  const b = model.tokenize(['what is the capital of france', 'is']);
  assert.deepEqual(b.inputIds, [[2, 5, 6, 3], [2, 6, 3, 0]]);
  assert.deepEqual(b.attentionMask, [[1, 1, 1, 1], [1, 1, 1, 0]]);
  model.dispose();
});
