// GradCache gives the gradients of the full-batch loss: every parameter's gradient (the model's
// and the learnable scale's) after a cached MNRL step with chunks of 2 and of 4 (a ragged last
// chunk) equals the one-forward step's; Matryoshka on top keeps that.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { assertClose, hasCpu } from '../helpers.js';
import { CAPITALS, COUNTRIES, PASSAGE, TRAIN_QUERY, tinyBertFolder } from './tiny_embedder.js';

const E = k.embeddings;

test('GradCache (chunks 2 and 4) gives the full batch gradients, with hard negatives, a learnable scale and Matryoshka', async () => {
  // float64 on the reference backend: the two orders of summation agree to rounding, so the check can be tight
  const model = await E.loadEmbedder(tinyBertFolder('kestrel-gc-'), { backend: 'ref', dtype: 'float64' });
  const batch: k.embeddings.PairExample[] = COUNTRIES.slice(0, 6).map((c, i) => ({ texts: [TRAIN_QUERY(c), PASSAGE(CAPITALS[i]), PASSAGE(CAPITALS[(i + 7) % 16])], where: `row ${i}` }));
  for (const cfg of [{ loss: 'mnrl', learnableScale: true, symmetric: true }, { loss: 'mnrl', matryoshka: [32, 8] }] as k.embeddings.EmbedLossConfig[]) {
    const trainee = new E.EmbeddingTrainee(model, cfg);
    const grads = (chunk: number): Map<string, Float64Array | null> => {
      trainee.zeroGrad();
      const step = E.embeddingStep(trainee, cfg, { gradCacheChunk: chunk });
      const { tokens } = step.accumulate([batch], {});
      // the input tokens, counted once however often GradCache embeds them: 18 texts of [CLS] words [SEP]
      assert.equal(tokens, batch.flatMap((x) => x.texts).reduce((n, t) => n + t.split(' ').length + 2, 0), `tokens with chunk ${chunk}`);
      // BERT's pooler is not part of a pooled embedding: it gets no gradient either way
      return new Map(trainee.namedParameters().map(([n, p]) => [n, p.grad ? Float64Array.from(p.grad.toTypedArray() as Float64Array) : null]));
    };
    const full = grads(0);
    assert.ok([...full.values()].some((g) => g?.some((x) => x !== 0)), 'the full batch has gradients');
    if (cfg.learnableScale) assert.ok(full.get('log_scale'), 'the learnable scale has a gradient');
    for (const chunk of [2, 4]) {
      const cached = grads(chunk);
      for (const [name, g] of full) {
        assert.equal(cached.get(name) === null, g === null, `${name}: a gradient in one run only`);
        if (!g) continue;
        const scale = g.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
        assertClose(cached.get(name)!, g, { atol: 1e-10 * Math.max(scale, 1e-3), rtol: 1e-8, what: `${JSON.stringify(cfg)} chunk ${chunk}: ${name}` });
      }
    }
  }
  model.dispose();
});

test('a GradCache step and encode leave no storage behind beyond the gradients', async () => {
  const model = await E.loadEmbedder(tinyBertFolder('kestrel-gc-leak-'));
  const trainee = new E.EmbeddingTrainee(model, { loss: 'mnrl' });
  const batch: k.embeddings.PairExample[] = COUNTRIES.slice(0, 5).map((c, i) => ({ texts: [TRAIN_QUERY(c), PASSAGE(CAPITALS[i])], where: `row ${i}` }));
  const step = E.embeddingStep(trainee, { loss: 'mnrl' }, { gradCacheChunk: 2 });
  step.accumulate([batch], {});
  trainee.zeroGrad();
  const base = k.memory.stats().current.total;
  for (let i = 0; i < 2; i++) {
    step.accumulate([batch], {});
    trainee.zeroGrad();
    E.encode(model, batch.map((b) => b.texts[0]), { batchSize: 2 });
    step.evaluate([batch]);
  }
  assert.equal(k.memory.stats().current.total, base, 'live bytes back to the baseline');
  model.dispose();
});

test('under bf16 autocast, GradCache rounds each weight once for all its no-graph chunks (and never in a re-forward)', { skip: hasCpu() ? false : 'native addon not built' }, async () => {
  const model = await E.loadEmbedder(tinyBertFolder('kestrel-gc-cast-'));
  const trainee = new E.EmbeddingTrainee(model, { loss: 'mnrl' });
  const batch: k.embeddings.PairExample[] = COUNTRIES.slice(0, 6).map((c, i) => ({ texts: [TRAIN_QUERY(c), PASSAGE(CAPITALS[i])], where: `row ${i}` }));
  // the weights the encoder's GEMMs read: every 2-d parameter except the embedding tables
  const weights = new Set(model.namedParameters().filter(([n, p]) => p.ndim === 2 && !n.includes('embeddings')).map(([, p]) => p.storage));
  const kern = k.getBackend('cpu').kernels;
  const copy = kern.copy;
  let rounded = 0;
  Object.assign(kern, { copy: (...a: Parameters<typeof copy>) => (weights.has(a[0].storage) && a[1].dtype === 'bfloat16' && rounded++, copy.apply(kern, a)) });
  try {
    E.embeddingStep(trainee, { loss: 'mnrl' }, { gradCacheChunk: 2 }).accumulate([batch], { autocast: 'bfloat16' });
  } finally {
    Object.assign(kern, { copy });
  }
  // the 2 columns x 3 chunks re-forwarded with autograd write no rounded copy (the CPU GEMM rounds a
  // float32 weight as it packs it: halfMatmulFloatB); the 6 cached forwards round each weight once, all
  // but query/key/value, which they read as one concatenated QKV weight (rounded from that copy)
  assert.equal(rounded, weights.size - 3);
  model.dispose();
});
