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
/** each fact's held-out query with its passage: a retrieval task over the 16 passages */
const HELD_OUT: k.embeddings.PairExample[] = COUNTRIES.map((c, i) => ({ texts: [TRAIN_QUERIES[heldOut(i)](c), PASSAGE(CAPITALS[i])], where: `held-out ${i}` }));
const SET = E.retrievalSetFromPairs(HELD_OUT);
const EXAMPLES: k.embeddings.PairExample[] = TRAIN_QUERIES.flatMap((q, t) =>
  COUNTRIES.flatMap((c, i) => (heldOut(i) === t ? [] : [{ texts: [q(c), PASSAGE(CAPITALS[i])], where: `fact ${i}` }])));

test('full fine-tuning with MNRL: held-out recall@1 rises from chance to near 1, logged in eval.jsonl', async () => {
  const model = await E.loadEmbedder(tinyBertFolder('kestrel-rt-'));
  const before = E.evaluateRetrieval(model, SET)['recall@1'];
  const out = mkdtempSync(join(tmpdir(), 'kestrel-rt-out-'));
  assert.deepEqual(Object.keys(SET.corpus).length, 16);
  const { evals } = await E.trainEmbedder({
    model, examples: EXAMPLES, format: 'triplets', loss: { loss: 'mnrl' }, batchSize: 16, maxSteps: 60, lr: 2e-2,
    evalExamples: HELD_OUT, evalEvery: 30, outputDir: out,
  });
  const after = evals.at(-1)!.metrics['recall@1'];
  assert.equal(after, E.evaluateRetrieval(model, SET)['recall@1'], 'the logged evaluation is the retrieval task');
  assert.ok(before <= 0.25, `recall@1 before training is ${before}, expected near chance (1/16)`);
  assert.ok(after >= 0.9 && after - before >= 0.6, `recall@1 ${before} -> ${after}`);
  const read = (f: string): Record<string, number>[] => readFileSync(join(out, f), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  assert.equal(read('metrics.jsonl').length, 60);
  const lines = read('eval.jsonl');
  assert.deepEqual(lines.map((l) => l.step), [30, 60]);
  assert.equal(lines[1]['eval_recall@1'], after);
  for (const key of ['eval_loss', 'eval_mrr@10', 'eval_ndcg@10', 'eval_recall@10']) assert.ok(Number.isFinite(lines[1][key]), key);
  model.dispose();
});

test('LoRA on the backbone: held-out recall@1 rises clearly, the base weights stay, merging keeps the embeddings', async () => {
  const model = await E.loadEmbedder(tinyBertFolder('kestrel-rt-lora-'));
  const base = new Map(model.backbone.namedParameters().map(([n, p]) => [n, p.toFloat32Array()]));
  k.manualSeed(1);
  k.lora.injectLora(model.backbone, { r: 8, alpha: 16, targetModules: 'all-linear' });
  const before = E.evaluateRetrieval(model, SET)['recall@1'];
  const { evals } = await E.trainEmbedder({
    model, examples: EXAMPLES, format: 'triplets', loss: { loss: 'mnrl' }, batchSize: 16, maxSteps: 100, lr: 3e-2, evalExamples: HELD_OUT, evalEvery: 100,
  });
  const after = evals.at(-1)!.metrics['recall@1'];
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

test('CoSENT on scored pairs: the STS Spearman of held-out pairs (the step evaluate) rises', async () => {
  const model = await E.loadEmbedder(tinyBertFolder('kestrel-rt-sts-'));
  // each query with its own passage (score 1) and another fact's (score 0)
  const scored = (rows: k.embeddings.PairExample[]): k.embeddings.PairExample[] => rows.flatMap((r, i) => [
    { texts: [r.texts[0], r.texts[1]], value: 1, where: r.where },
    { texts: [r.texts[0], PASSAGE(CAPITALS[(COUNTRIES.findIndex((c) => r.texts[0].includes(c)) + 5 + (i % 7)) % 16])], value: 0, where: r.where },
  ]);
  const evalPairs = scored(HELD_OUT);
  const before = E.evaluateSts(model, evalPairs.map((e) => [e.texts[0], e.texts[1], e.value!] as const)).spearman;
  const { evals } = await E.trainEmbedder({
    model, examples: scored(EXAMPLES), format: 'scored', loss: { loss: 'cosent' }, batchSize: 16, maxSteps: 60, lr: 2e-2, evalExamples: evalPairs, evalEvery: 60,
  });
  const after = evals.at(-1)!.metrics.spearman;
  assert.ok(after - before >= 0.3 && after >= 0.5, `held-out Spearman ${before} -> ${after}`);
  model.dispose();
});
