// Pooling on the bert and llama fixtures against values computed here by hand from transformers'
// own hidden states (golden.safetensors: BERT's last_hidden_state, Llama's final-norm
// hidden_states.2) and the fixture's attention mask, whose second row is padded: the padding must
// not change an embedding.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { assertClose, gradcheck, refLeaf } from '../helpers.js';
import { fixture } from '../fixtures.js';

const E = k.embeddings;
/** The pooling tests feed token ids directly; no text is encoded. */
const NO_TEXT: k.embeddings.TextTokenizer = { encode: () => { throw new Error('not used'); }, padTokenId: 0, eosTokenId: null };

/** Pooled rows computed from golden hidden states [B, T, D] and the mask, in float64. */
function handPool(h: Float32Array, mask: number[][], D: number, mode: k.embeddings.PoolingMode): number[] {
  const T = mask[0].length;
  return mask.flatMap((row, b) => {
    const at = (t: number, d: number): number => h[(b * T + t) * D + d];
    if (mode === 'cls') return Array.from({ length: D }, (_, d) => at(0, d));
    if (mode === 'lasttoken') return Array.from({ length: D }, (_, d) => at(row.lastIndexOf(1), d));
    if (mode === 'max') return Array.from({ length: D }, (_, d) => Math.max(...row.flatMap((m, t) => (m ? [at(t, d)] : []))));
    const w = row.map((m, t) => (m ? (mode === 'weightedmean' ? t + 1 : 1) : 0));
    const total = w.reduce((s, x) => s + x, 0);
    // mean_sqrt_len_tokens: the attended sum over sqrt(count) (sentence-transformers' Pooling)
    const norm = mode === 'mean_sqrt_len_tokens' ? Math.sqrt(total) : total;
    return Array.from({ length: D }, (_, d) => w.reduce((s, wt, t) => s + wt * at(t, d), 0) / norm);
  });
}

function rowsOf(t: k.Tensor): number[][] {
  const v = Array.from(t.toTypedArray() as BigInt64Array, Number);
  return Array.from({ length: t.shape[0] }, (_, b) => v.slice(b * t.shape[1], (b + 1) * t.shape[1]));
}

for (const [name, golden] of [['bert', 'last_hidden_state'], ['llama', 'hidden_states.2']] as const) {
  const fx = fixture('models', name);
  test(`${name}: every pooling mode (cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken) equals hand-computed values from transformers' hidden states`, { skip: fx.skip }, async () => {
    const { model } = await k.loadPretrained(fx.path);
    using g = new SafetensorsFile(join(fx.path, 'golden.safetensors'));
    const ids = rowsOf(g.tensor('input_ids'));
    const mask = rowsOf(g.tensor('attention_mask'));
    const tokenTypeIds = name === 'bert' ? rowsOf(g.tensor('token_type_ids')) : undefined;
    assert.ok(mask[1].includes(0), 'the fixture has a padded row');
    const h = g.tensor(golden).toFloat32Array();
    const backbone = E.asBackbone(model, 'fixture');
    const D = backbone.config.hiddenSize;
    const scale = h.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    for (const pooling of E.POOLING_MODES) {
      const emb = new E.SentenceEmbedder(backbone, NO_TEXT, { pooling });
      const got = k.noGrad(() => emb.forward({ inputIds: ids, attentionMask: mask, promptLength: 0, tokenTypeIds }));
      assertClose(got, handPool(h, mask, D, pooling), { atol: 1e-4 * scale, rtol: 1e-4, what: `${name} ${pooling}` });
      // the padded row alone, unpadded, gives the same embedding
      const n = mask[1].lastIndexOf(1) + 1;
      const alone = k.noGrad(() => emb.forward({ inputIds: [ids[1].slice(0, n)], attentionMask: [mask[1].slice(0, n)], promptLength: 0, tokenTypeIds: tokenTypeIds && [tokenTypeIds[1].slice(0, n)] }));
      assertClose(alone, got.toFloat32Array().slice(D, 2 * D), { atol: 1e-5, rtol: 1e-4, what: `${name} ${pooling}: padding changed the embedding` });
    }
    model.dispose();
  });
}

test('llama: last-token and mean pooling give the same vectors for left- and right-padded batches', { skip: fixture('models', 'llama').skip }, async () => {
  const { model } = await k.loadPretrained(fixture('models', 'llama').path);
  const rows = [[1, 40, 41, 42, 43, 44, 45], [1, 50, 51]];
  const pad = (left: boolean): k.embeddings.TextBatch => {
    const T = 7;
    const fill = (r: number[], v: number): number[] => (left ? [...new Array<number>(T - r.length).fill(v), ...r] : [...r, ...new Array<number>(T - r.length).fill(v)]);
    return { inputIds: rows.map((r) => fill(r, 0)), attentionMask: rows.map((r) => fill(r.map(() => 1), 0)), promptLength: 0 };
  };
  for (const pooling of ['lasttoken', 'mean'] as const) {
    const emb = new E.SentenceEmbedder(E.asBackbone(model, 'fixture'), NO_TEXT, { pooling });
    // RoPE scores depend on relative positions only, so shifting a row right by its padding changes nothing
    const [r, l] = [pad(false), pad(true)].map((b) => k.noGrad(() => emb.forward(b)));
    assertClose(l, r, { atol: 1e-5, rtol: 1e-4, what: `${pooling}: left vs right padding` });
  }
  model.dispose();
});

test('pool: a row that attends to nothing and mismatched shapes are errors', () => {
  const h = k.zeros([2, 3, 4]);
  assert.throws(() => E.pool(h, [[1, 1, 0], [0, 0, 0]], 'lasttoken'), /row 1 of the attention mask attends to no token/);
  assert.throws(() => E.pool(h, [[1, 1, 0]], 'mean'), /do not match/);
});

test('max and mean_sqrt_len_tokens by hand; several modes concatenate in sentence-transformers order; gradients by finite differences', () => {
  // one row of 3 tokens (the last is padding) with D = 2
  const h = k.tensor([[[1, -4], [3, -2], [100, 100]]]);
  const mask = [[1, 1, 0]];
  // max over the two attended tokens: [max(1, 3), max(-4, -2)]; the pad (100) never wins
  assertClose(E.pool(h, mask, 'max'), [3, -2], { atol: 0, rtol: 0, what: 'max' });
  // sum [4, -6] over sqrt(2)
  assertClose(E.pool(h, mask, 'mean_sqrt_len_tokens'), [4 / Math.SQRT2, -6 / Math.SQRT2], { atol: 1e-6, rtol: 1e-6, what: 'mean_sqrt_len_tokens' });
  // Pooling.forward appends cls, max, mean, mean_sqrt_len, weightedmean, lasttoken in that order, whatever order they are asked in
  assert.deepEqual(E.poolingModes(['lasttoken', 'mean', 'cls']), ['cls', 'mean', 'lasttoken']);
  assertClose(E.pool(h, mask, ['mean', 'max', 'cls']), [1, -4, 3, -2, 2, -3], { atol: 1e-6, rtol: 0, what: 'cls + max + mean' });
  // a left-out prompt (include_prompt false) is left out of the max too: only token 1 counts
  assertClose(E.pool(h, mask, 'max', { promptLength: 1 }), [3, -2], { atol: 0, rtol: 0, what: 'max without the prompt' });
  assertClose(E.pool(k.tensor([[[5, -4], [3, -2], [0, 0]]]), mask, 'max', { promptLength: 1 }), [3, -2], { atol: 0, rtol: 0, what: 'prompt token 0 (5) is not the max' });
  assert.throws(() => E.poolingModes(['mean', 'mean']), /distinct modes/);
  assert.throws(() => E.parsePooling('mean,median'), /got \[mean, median\]/);
  // the new modes' gradients (max's goes to the winning token only; no ties in these values)
  const x = refLeaf([2, 4, 3], 7);
  const m2 = [[1, 1, 1, 0], [1, 0, 0, 0]];
  for (const spec of ['max', 'mean_sqrt_len_tokens', ['cls', 'max', 'mean_sqrt_len_tokens']] as const)
    gradcheck((t) => E.pool(t, m2, spec), [x], { what: `pool ${JSON.stringify(spec)}` });
});
