// kestrel embed / embed-train / embed-mine started as a user starts them (runCli): output files
// in the documented formats, equal to the library's results, and bad input named file:line.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { buildModel } from '../../src/models/registry.js';
import { writeByteTokenizer } from '../../src/demo/byte_tokenizer.js';
import { assertClose, runCli } from '../helpers.js';
import { CAPITALS, COUNTRIES, PASSAGE, TRAIN_QUERIES, tinyBertFolder } from '../embed/tiny_embedder.js';

const E = k.embeddings;
const lines = (file: string): Record<string, unknown>[] => readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
const writeJsonl = (file: string, rows: unknown[]): string => (writeFileSync(file, rows.map((r) => JSON.stringify(r)).join('\n') + '\n'), file);
const TEXTS = ['paris is a large old city', 'what is the capital of france', 'rome', 'the main city of peru', 'oslo'];

test('kestrel embed: one embedding line per text, in order, equal to k.embeddings.encode; a BERT folder and a decoder folder', async () => {
  const bert = tinyBertFolder('kestrel-cli-embed-');
  // a random 1-layer Llama with the demo's byte-level tokenizer: any decoder folder embeds (last-token pooling here)
  const llama = tinyBertFolder('kestrel-cli-llama-');
  const config = { model_type: 'llama', vocab_size: 260, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64 };
  k.manualSeed(2);
  const dec = buildModel(config, join(llama, 'config.json'));
  k.savePretrained(llama, { model: dec, hfConfig: config });
  dec.dispose();
  writeByteTokenizer(llama);
  const input = writeJsonl(join(bert, 'texts.jsonl'), TEXTS.map((text) => ({ text })));
  for (const [dir, extra] of [[bert, []], [llama, ['--pooling', 'lasttoken']]] as const) {
    const output = join(dir, 'vectors.jsonl');
    const r = runCli(['embed', '--model', dir, '--input', input, '--output', output, '--batch-size', '2', ...extra]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /embedded 5 texts \(dim \d+\)/);
    const got = lines(output);
    assert.equal(got.length, TEXTS.length);
    const model = await E.loadEmbedder(dir, { pooling: extra.length ? 'lasttoken' : undefined });
    const want = E.encode(model, TEXTS, { batchSize: 2 });
    got.forEach((row, i) => assertClose(row.embedding as number[], want[i], { atol: 1e-6, rtol: 1e-5, what: `${dir} line ${i + 1}` }));
    model.dispose();
  }
  writeJsonl(input, [{ text: 'a' }, { txt: 'b' }]);
  const bad = runCli(['embed', '--model', bert, '--input', input, '--output', join(bert, 'x.jsonl')]);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /texts\.jsonl:2: missing field "text"/);
});

test('kestrel embed-train (Matryoshka, GradCache, eval) writes metrics.jsonl, eval.jsonl and a sentence-transformers folder; embed-mine mines negatives', async () => {
  const dir = tinyBertFolder('kestrel-cli-train-');
  const held = (i: number): number => i % 3;
  const data = writeJsonl(join(dir, 'train.jsonl'), TRAIN_QUERIES.flatMap((q, t) => COUNTRIES.flatMap((c, i) => (held(i) === t ? [] : [{ anchor: q(c), positive: PASSAGE(CAPITALS[i]) }]))));
  const evalData = writeJsonl(join(dir, 'eval.jsonl'), COUNTRIES.map((c, i) => ({ anchor: TRAIN_QUERIES[held(i)](c), positive: PASSAGE(CAPITALS[i]) })));
  const out = join(dir, 'out');
  const r = runCli(['embed-train', '--model', dir, '--data', data, '--output', out, '--loss', 'mnrl', '--batch-size', '16', '--max-steps', '40', '--lr', '2e-2',
    '--matryoshka', '32,16', '--gradcache-chunk', '8', '--eval-data', evalData, '--eval-every', '20', '--normalize', '--query-prompt', 'what is ', '--quiet']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /trained 40 steps, loss [\d.]+, eval recall@1 [\d.]+/);
  assert.equal(lines(join(out, 'metrics.jsonl')).length, 40);
  const evals = lines(join(out, 'eval.jsonl'));
  assert.deepEqual(evals.map((m) => m.step), [20, 40]);
  assert.ok((evals[1]['eval_recall@1'] as number) >= 0.75, `held-out recall@1 after embed-train: ${evals[1]['eval_recall@1']}`);
  assert.deepEqual((JSON.parse(readFileSync(join(out, 'modules.json'), 'utf8')) as { path: string }[]).map((m) => m.path), ['', '1_Pooling', '2_Normalize']);
  const trained = await E.loadEmbedder(out);
  assert.deepEqual(trained.settings.prompts, { query: 'what is ', passage: '' });
  trained.dispose();

  const mined = join(dir, 'mined.jsonl');
  const m = runCli(['embed-mine', '--model', out, '--data', evalData, '--output', mined, '--num-negatives', '2', '--quiet']);
  assert.equal(m.status, 0, m.stderr);
  const rows = lines(mined);
  assert.equal(rows.length, COUNTRIES.length);
  for (const row of rows) {
    assert.deepEqual(Object.keys(row), ['anchor', 'positive', 'negative_1', 'negative_2']);
    assert.ok(row.negative_1 !== row.positive && row.negative_2 !== row.positive && row.negative_1 !== row.negative_2, JSON.stringify(row));
    assert.ok(CAPITALS.some((c) => row.negative_1 === PASSAGE(c)), 'negatives come from the corpus (the positives)');
  }
  // the mined rows train a triplet loss; LoRA saves the adapter and the merged model
  const lo = runCli(['embed-train', '--model', out, '--data', mined, '--output', join(dir, 'out2'), '--loss', 'mnrl', '--max-steps', '3', '--lora', '--lora-r', '4', '--quiet']);
  assert.equal(lo.status, 0, lo.stderr);
  assert.ok(existsSync(join(dir, 'out2', 'adapter', 'adapter_config.json')) && existsSync(join(dir, 'out2', 'modules.json')));
  const bad = runCli(['embed-train', '--model', dir, '--data', data, '--output', join(dir, 'o3'), '--loss', 'cosent']);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /--loss cosent needs scored data \(\{sentence1, sentence2, score\}\), the data is triplets/);
});
