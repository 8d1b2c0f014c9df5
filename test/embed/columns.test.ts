// embedColumns: the columns of a batch that pad to one length (with one prompt length) go through
// one forward, and each column's embeddings equal its own forward's (float64 on the reference
// backend: the merged batch holds the same rows, so only the GEMMs' summation blocking may differ,
// to rounding); columns of different lengths or prompt lengths are embedded one by one. A training
// step through it gives the loss, gradients and token count of the column-by-column step.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { assertClose } from '../helpers.js';
import { CAPITALS, COUNTRIES, HELDOUT_QUERY, PASSAGE, TRAIN_QUERY, tinyBertFolder } from './tiny_embedder.js';

const E = k.embeddings;
const TOL = { atol: 1e-12, rtol: 1e-10 };

/** model.forward counted while fn runs */
function forwards<T>(model: k.embeddings.SentenceEmbedder, fn: () => T): { value: T; calls: number } {
  const forward = model.forward;
  let calls = 0;
  model.forward = (b) => (calls++, forward.call(model, b));
  try {
    return { value: fn(), calls };
  } finally {
    model.forward = forward;
  }
}

test('equal-length columns share one forward and equal their own forwards; others go one by one', async () => {
  const model = await E.loadEmbedder(tinyBertFolder('kestrel-cols-'), { backend: 'ref', dtype: 'float64' });
  const anchors = COUNTRIES.slice(0, 4).map(TRAIN_QUERY);
  const passages = CAPITALS.slice(0, 4).map(PASSAGE);
  assert.equal(model.tokenize(anchors).inputIds[0].length, model.tokenize(passages).inputIds[0].length, 'the fixture columns pad to one length');
  const own = (cols: string[][], prompts: string[] = []): k.Tensor[] => cols.map((t, c) => model.forward(model.tokenize(t, prompts[c] ?? '')));
  k.noGrad(() => k.tidy(() => {
    const merged = forwards(model, () => E.embedColumns(model, [anchors, passages, passages.slice().reverse()]));
    assert.equal(merged.calls, 1);
    own([anchors, passages, passages.slice().reverse()]).forEach((want, c) => assertClose(merged.value[c], want, { ...TOL, what: `column ${c}` }));
    // a longer column: one forward per column
    const ragged = [anchors, COUNTRIES.slice(0, 4).map(HELDOUT_QUERY)];
    const apart = forwards(model, () => E.embedColumns(model, ragged));
    assert.equal(apart.calls, 2);
    own(ragged).forEach((want, c) => assertClose(apart.value[c], want, { ...TOL, what: `ragged column ${c}` }));
  }));
  model.dispose();
});

test('prompts of different lengths with include_prompt false are embedded one by one', async () => {
  const model = await E.loadEmbedder(tinyBertFolder('kestrel-cols-prompt-'), { backend: 'ref', dtype: 'float64' });
  model.settings.includePrompt = false;
  // 'the' and 'capital of' before texts of 6 and 5 words: every row 9 tokens, prompt lengths 2 and 3
  const cols = [COUNTRIES.slice(0, 3).map(TRAIN_QUERY), COUNTRIES.slice(0, 3).map((c) => `what is the city ${c}`)];
  const prompts = ['the ', 'capital of '];
  k.noGrad(() => k.tidy(() => {
    const lengths = cols.map((t, c) => model.tokenRows(t, prompts[c]));
    assert.deepEqual(lengths.map((l) => l.rows[0].length), [9, 9]);
    assert.notEqual(lengths[0].promptLength, lengths[1].promptLength);
    const got = forwards(model, () => E.embedColumns(model, cols, prompts));
    assert.equal(got.calls, 2);
    cols.forEach((t, c) => assertClose(got.value[c], model.forward(model.tokenize(t, prompts[c])), { ...TOL, what: `column ${c}` }));
  }));
  model.dispose();
});

test('an MNRL step with hard negatives through the merged forward = column by column', async () => {
  const model = await E.loadEmbedder(tinyBertFolder('kestrel-cols-step-'), { backend: 'ref', dtype: 'float64' });
  const batch: k.embeddings.PairExample[] = COUNTRIES.slice(0, 5).map((c, i) => ({ texts: [TRAIN_QUERY(c), PASSAGE(CAPITALS[i]), PASSAGE(CAPITALS[(i + 7) % 16])], where: `row ${i}` }));
  const cfg: k.embeddings.EmbedLossConfig = { loss: 'mnrl', learnableScale: true };
  const trainee = new E.EmbeddingTrainee(model, cfg);
  const grads = (): Map<string, Float64Array> =>
    new Map(trainee.namedParameters().filter(([, p]) => p.grad).map(([n, p]) => [n, Float64Array.from(p.grad!.toTypedArray() as Float64Array)]));
  const step = E.embeddingStep(trainee, cfg);
  const merged = forwards(model, () => step.accumulate([batch], {}));
  assert.equal(merged.calls, 1);
  const mergedGrads = grads();
  trainee.zeroGrad();
  // the reference: each column its own forward, the loss over them, backward
  const columns = [0, 1, 2].map((c) => batch.map((x) => x.texts[c]));
  const loss = k.tidy(() => {
    const l = E.batchLoss(cfg, columns.map((t) => model.forward(model.tokenize(t))), batch, trainee.log_scale);
    l.backward();
    return l.item();
  });
  assertClose([merged.value.loss], [loss], { ...TOL, what: 'loss' });
  // 15 texts of [CLS] + 6 words + [SEP]
  assert.equal(merged.value.tokens, 15 * 8);
  const want = grads();
  assert.ok(want.size > 10);
  assert.deepEqual([...mergedGrads.keys()].sort(), [...want.keys()].sort());
  for (const [name, g] of want) assertClose(mergedGrads.get(name)!, g, { atol: 1e-12, rtol: 1e-9, what: `grad ${name}` });
  model.dispose();
});

test('a batch without padding is embedded without an attention mask, equal to the all-ones mask', async () => {
  const model = await E.loadEmbedder(tinyBertFolder('kestrel-cols-nomask-'), { backend: 'ref', dtype: 'float64' });
  const bert = model.backbone as import('../../src/models/bert.js').BertModel;
  const batch = model.tokenize(COUNTRIES.slice(0, 3).map(TRAIN_QUERY));
  k.noGrad(() => k.tidy(() => {
    const forward = bert.forward;
    const masks: (k.Tensor | null | undefined)[] = [];
    bert.forward = (input) => (masks.push(input.attentionMask), forward.call(bert, input));
    let got: k.Tensor;
    try {
      got = model.forward(batch);
    } finally {
      bert.forward = forward;
    }
    assert.deepEqual(masks, [null]);
    const ids = k.tensor(batch.inputIds, { dtype: 'int64', backend: 'ref' });
    const ones = k.tensor(batch.attentionMask, { dtype: 'int64', backend: 'ref' });
    const h = bert.forward({ inputIds: ids, attentionMask: ones }).lastHiddenState;
    assertClose(got, h.mean(1), { atol: 1e-14, rtol: 1e-12, what: 'mean-pooled, no mask vs all-ones mask' });
  }));
  model.dispose();
});
