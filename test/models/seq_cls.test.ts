// Sequence classification (reward models): transformers 4.44's LlamaForSequenceClassification
// fixture (scores read before the first pad, the pairwise loss, every gradient); the same head on
// every decoder family, checked against transformers' own final hidden states; save -> load.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { readJson } from '../../src/io/hf_folder.js';
import { loadCausalLM, loadPretrained, savePretrained } from '../../src/models/load.js';
import { buildModel } from '../../src/models/registry.js';
import { DecoderForSequenceClassification, pooledPositions } from '../../src/models/seq_cls.js';
import { pairwiseRewardLoss } from '../../src/preference/reward_loss.js';
import { assertClose } from '../helpers.js';
import { fixture } from '../fixtures.js';

const seqcls = fixture('models', 'llama-seqcls');

function closeRel(got: k.Tensor | ArrayLike<number>, want: k.Tensor | ArrayLike<number>, rel: number, what: string): void {
  const w = want instanceof k.Tensor ? want.toFloat32Array() : want;
  const scale = Array.from(w).reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  assertClose(got, want, { atol: rel * scale, rtol: rel, what });
}

test('llama-seqcls: scores, pooled positions, pairwise loss and every gradient match transformers', { skip: seqcls.skip }, async () => {
  const { model } = await loadPretrained(seqcls.path);
  assert.ok(model instanceof DecoderForSequenceClassification);
  assert.equal(model.numLabels, 1);
  using g = new SafetensorsFile(join(seqcls.path, 'golden.safetensors'));
  const t = (n: string): k.Tensor => g.tensor(n);
  const ids = t('input_ids');
  assert.deepEqual(pooledPositions(ids.toArray() as number[][], 0), [...t('pooled_index').toArray() as number[]]);
  model.train();
  k.tidy(() => {
    const { logits } = model.forward({ inputIds: ids, attentionMask: t('attention_mask') });
    assert.deepEqual(logits.shape, [3, 1]);
    closeRel(logits, t('logits'), 1e-5, 'scores');
    const scores = k.select(logits, 1, 0);
    const pairs = t('pairs').toArray() as number[][];
    const idx = (col: number): k.Tensor => k.tensor(pairs.map((p) => p[col]), { dtype: 'int64' });
    const [chosen, rejected] = [k.indexSelect(scores, 0, idx(0)), k.indexSelect(scores, 0, idx(1))];
    const perPair = k.neg(k.logSigmoid(k.sub(chosen, rejected)));
    closeRel(perPair, t('pair_losses'), 1e-5, 'pair losses');
    const loss = pairwiseRewardLoss(chosen, rejected);
    assertClose([loss.item()], [t('loss').item()], { atol: 0, rtol: 1e-5, what: 'loss' });
    loss.backward();
  });
  const names = (readJson(join(seqcls.path, 'golden.json')).grad_params as string[]);
  assert.deepEqual(model.namedParameters().map(([n]) => n).sort(), [...names].sort(), 'the same parameters as transformers');
  for (const [name, p] of model.namedParameters()) closeRel(p.grad!, t(`grad.${name}`), 1e-3, `grad.${name}`);
  model.dispose();
});

// Every decoder family: the causal fixture's trunk under a fresh 3-label head. transformers'
// final hidden state (hidden_states.<layers>, after the norm) at the pooled position times
// score.weight, in float64, is what the head must return.
const FAMILIES: [string, string][] = [
  ['llama', 'Llama'], ['qwen2', 'Qwen2'], ['mistral-sliding-window', 'Mistral'], ['gemma', 'Gemma'], ['gemma2', 'Gemma2'], ['phi3', 'Phi3'], ['mixtral', 'Mixtral'],
];
for (const [name, cls] of FAMILIES) {
  const fx = fixture('models', name);
  test(`${cls}ForSequenceClassification: the head on ${name}'s trunk reads transformers' last hidden state before the first pad`, { skip: fx.skip }, async () => {
    const { model: lm, hfConfig } = await loadCausalLM(fx.path);
    const raw = { ...hfConfig, architectures: [`${cls}ForSequenceClassification`], num_labels: 3, pad_token_id: 0 };
    const model = buildModel(raw, `${name} seqcls config`, { generator: new k.Generator(5) });
    assert.ok(model instanceof DecoderForSequenceClassification);
    const trunk = Object.fromEntries(lm.namedParameters().filter(([n]) => n.startsWith('model.')));
    const r = model.loadStateDict(trunk, { strict: false });
    assert.deepEqual(r.missing, ['score.weight'], 'only the head is new');
    using g = new SafetensorsFile(join(fx.path, 'golden.safetensors'));
    const ids = g.tensor('input_ids');
    const last = g.tensor(`hidden_states.${model.config.numLayers}`).toFloat32Array(); // [B, T, D]
    const [B, T] = ids.shape;
    const D = model.config.hiddenSize;
    const W = model.score.weight.toFloat32Array(); // [3, D]
    const at = pooledPositions(ids.toArray() as number[][], 0);
    assert.deepEqual(at, [T - 1, 10], 'row 0 is unpadded, row 1 has 11 tokens');
    const want: number[] = [];
    for (let b = 0; b < B; b++) for (let l = 0; l < 3; l++) {
      let s = 0;
      for (let d = 0; d < D; d++) s += last[(b * T + at[b]) * D + d] * W[l * D + d];
      want.push(s);
    }
    k.tidy(() => closeRel(model.forward({ inputIds: ids, attentionMask: g.tensor('attention_mask') }).logits, want, 1e-4, `${name} scores`));
    lm.dispose();
    model.dispose();
  });
}

test('a sequence-classification folder saves in HF layout and loads back to the same scores', () => {
  const raw = {
    architectures: ['Qwen2ForSequenceClassification'], model_type: 'qwen2', vocab_size: 40, hidden_size: 16, intermediate_size: 32,
    num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 32, rms_norm_eps: 1e-6,
    rope_theta: 10000, hidden_act: 'silu', tie_word_embeddings: false, pad_token_id: 0, id2label: { 0: 'LABEL_0', 1: 'LABEL_1' }, torch_dtype: 'float32',
  };
  const model = buildModel(raw, 'inline config', { generator: new k.Generator(3) });
  assert.ok(model instanceof DecoderForSequenceClassification);
  assert.equal(model.numLabels, 2, 'num_labels from id2label');
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-seqcls-'));
  savePretrained(dir, { model, hfConfig: raw });
  using f = new SafetensorsFile(join(dir, 'model.safetensors'));
  assert.deepEqual(f.info('score.weight').shape, [2, 16], 'score.weight [num_labels, hidden] as transformers names it');
  assert.ok(!f.names.some((n) => n.startsWith('lm_head')));
  assert.equal(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')).architectures[0], 'Qwen2ForSequenceClassification');
  return loadPretrained(dir).then(({ model: back }) => {
    assert.ok(back instanceof DecoderForSequenceClassification);
    const inputIds = k.tensor([[5, 6, 7, 0], [8, 9, 10, 11]], { dtype: 'int64' });
    k.tidy(() => assertClose(back.forward({ inputIds }).logits, model.forward({ inputIds }).logits, { atol: 0, rtol: 0, what: 'scores after reload' }));
    back.dispose();
    model.dispose();
  });
});

test('sequence classification refuses what transformers cannot read', () => {
  assert.throws(() => pooledPositions([[1, 2], [3, 4]], null), /no pad_token_id.*batch of 2/);
  assert.deepEqual(pooledPositions([[1, 2, 3]], null), [2]);
  assert.deepEqual(pooledPositions([[0, 0, 5, 6]], 0), [3], 'left padding: first pad at 0 -> the last position, as HF');
  assert.throws(() => buildModel({ model_type: 'gpt2', architectures: ['GPT2ForSequenceClassification'] }, 'g/config.json'), /GPT2ForSequenceClassification is not supported.*decoder families/);
});

test('tokenLogits: the head at every position; read at the pooled positions it equals forward\'s logits', () => {
  const raw = {
    architectures: ['LlamaForSequenceClassification'], model_type: 'llama', vocab_size: 40, hidden_size: 16, intermediate_size: 32,
    num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 32, rms_norm_eps: 1e-6,
    rope_theta: 10000, hidden_act: 'silu', tie_word_embeddings: false, pad_token_id: 0, num_labels: 3, torch_dtype: 'float32',
  };
  const model = buildModel(raw, 'inline config', { generator: new k.Generator(8) }) as DecoderForSequenceClassification;
  const ids = [[5, 6, 7, 0, 0], [8, 9, 10, 11, 12], [13, 0, 0, 0, 0]]; // right-padded, pad 0
  const mask = ids.map((r) => r.map((t) => (t ? 1 : 0)));
  const input = { inputIds: k.tensor(ids, { dtype: 'int64' }), attentionMask: k.tensor(mask, { dtype: 'int64' }) };
  const all = k.tidy(() => model.tokenLogits(input).toArray() as number[][][]);
  assert.deepEqual([all.length, all[0].length, all[0][0].length], [3, 5, 3]);
  const pooled = k.tidy(() => model.forward(input).logits.toArray() as number[][]);
  pooledPositions(ids, 0).forEach((t, b) => assertClose(all[b][t], pooled[b], { atol: 1e-6, rtol: 1e-6, what: `row ${b} at ${t}` }));
  model.dispose();
});
