// A synthetic retrieval task: 16 facts (country -> capital); passages name only the capital,
// queries only the country, through three templates. Each fact is trained with two templates;
// its third (held-out) query is the evaluation, so a rise in recall@1 means the model learned the
// fact and the template separately. Chance recall@1 is 1/16. Full fine-tuning and LoRA.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { assertClose } from '../helpers.js';
import { CAPITALS, COUNTRIES, PASSAGE, TRAIN_QUERIES, tinyBertFolder } from './tiny_embedder.js';

const E = k.embeddings;
const heldOut = (i: number): number => i % TRAIN_QUERIES.length;
const SET: k.embeddings.RetrievalSet = {
  queries: Object.fromEntries(COUNTRIES.map((c, i) => [`q${i}`, TRAIN_QUERIES[heldOut(i)](c)])),
  corpus: Object.fromEntries(CAPITALS.map((c, i) => [`d${i}`, PASSAGE(c)])),
  qrels: Object.fromEntries(COUNTRIES.map((_, i) => [`q${i}`, [`d${i}`]])),
};
const EXAMPLES: k.embeddings.PairExample[] = TRAIN_QUERIES.flatMap((q, t) =>
  COUNTRIES.flatMap((c, i) => (heldOut(i) === t ? [] : [{ texts: [q(c), PASSAGE(CAPITALS[i])], where: `fact ${i}` }])));

test('full fine-tuning with MNRL: held-out recall@1 rises from chance to near 1, logged in metrics.jsonl', async () => {
  const model = await E.loadEmbedder(tinyBertFolder('kestrel-rt-'));
  const before = E.evaluateRetrieval(model, SET)['recall@1'];
  const out = mkdtempSync(join(tmpdir(), 'kestrel-rt-out-'));
  const { metrics } = await E.trainEmbedder({
    model, examples: EXAMPLES, format: 'triplets', loss: { loss: 'mnrl' }, batchSize: 16, maxSteps: 60, lr: 2e-2,
    evaluate: () => E.evaluateRetrieval(model, SET), evalEvery: 30, outputDir: out,
  });
  const after = metrics.at(-1)!.eval!['eval_recall@1'];
  assert.ok(before <= 0.25, `recall@1 before training is ${before}, expected near chance (1/16)`);
  assert.ok(after >= 0.9 && after - before >= 0.6, `recall@1 ${before} -> ${after}`);
  const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  assert.equal(lines.length, 60);
  assert.deepEqual(lines.filter((l) => 'eval_recall@1' in l).map((l) => l.step), [30, 60]);
  assert.equal(lines[59]['eval_recall@1'], after);
  for (const key of ['eval_mrr@10', 'eval_ndcg@10', 'loss', 'grad_norm']) assert.ok(Number.isFinite(lines[59][key]), key);
  model.dispose();
});

test('LoRA on the backbone: held-out recall@1 rises clearly, the base weights stay, merging keeps the embeddings', async () => {
  const model = await E.loadEmbedder(tinyBertFolder('kestrel-rt-lora-'));
  const base = new Map(model.backbone.namedParameters().map(([n, p]) => [n, p.toFloat32Array()]));
  k.manualSeed(1);
  k.lora.injectLora(model.backbone, { r: 8, alpha: 16, targetModules: 'all-linear' });
  const before = E.evaluateRetrieval(model, SET)['recall@1'];
  const { metrics } = await E.trainEmbedder({
    model, examples: EXAMPLES, format: 'triplets', loss: { loss: 'mnrl' }, batchSize: 16, maxSteps: 100, lr: 3e-2,
    evaluate: () => E.evaluateRetrieval(model, SET), evalEvery: 100,
  });
  const after = metrics.at(-1)!.eval!['eval_recall@1'];
  assert.ok(after - before >= 0.4, `LoRA recall@1 ${before} -> ${after}`);
  for (const [n, p] of model.backbone.namedParameters()) {
    const key = n.replace('.base_layer', '');
    if (base.has(key) && !n.includes('lora_')) assert.deepEqual(p.toFloat32Array(), base.get(key), `${n} changed under LoRA`);
  }
  const adapted = E.encode(model, Object.values(SET.queries));
  k.lora.mergeLora(model.backbone);
  E.encode(model, Object.values(SET.queries)).forEach((v, i) => assertClose(v, adapted[i], { atol: 1e-4, rtol: 1e-3, what: `merged query ${i}` }));
  model.dispose();
});
