// The trainer logs every MoE layer's per-expert token counts and load imbalance (max/mean) in
// metrics.jsonl: counts sum to the step's routed slots (tokens x top-k over its micro-batches),
// imbalances follow from the counts, and evaluation forwards are not counted.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { decoderConfig } from '../../src/models/registry.js';
import { takeExpertLoadMetrics } from '../../src/train/moe_metrics.js';

const config = decoderConfig({
  model_type: 'mixtral', vocab_size: 32, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, num_local_experts: 4, num_experts_per_tok: 2, max_position_embeddings: 64,
}, 'test config');

test('metrics.jsonl: expert_counts per layer sum to tokens x k, imbalance = max/mean, moe_imbalance the largest', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-moe-train-'));
  const lines = Array.from({ length: 16 }, (_, i) => JSON.stringify({ input_ids: Array.from({ length: 12 }, (_, t) => (i * 7 + t * 3) % 32) }));
  writeFileSync(join(dir, 'train.jsonl'), lines.join('\n') + '\n');
  const { train } = await k.data.loadDataset(join(dir, 'train.jsonl'), { format: 'pretokenized', seqLen: 12, pack: false, seed: 1, padId: 0, eosId: 31 });
  k.manualSeed(3);
  const model = new k.CausalLM(config);
  const out = join(dir, 'run');
  await new k.train.Trainer({ model, data: train, batchSize: 2, gradAccum: 2, maxSteps: 2, lr: 1e-3, outputDir: out, saveEvery: 0 }).train();
  const logged = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(logged.length, 2);
  for (const m of logged) {
    const counts = m.expert_counts as Record<string, number[]>;
    const imb = m.expert_imbalance as Record<string, number>;
    assert.deepEqual(Object.keys(counts), ['model.layers.0.block_sparse_moe', 'model.layers.1.block_sparse_moe']);
    for (const [layer, c] of Object.entries(counts)) {
      assert.equal(c.length, 4);
      // 2 micro-batches x 2 rows x 12 positions, 2 experts each
      assert.equal(c.reduce((a, b) => a + b, 0), 2 * 2 * 12 * 2, layer);
      assert.ok(Math.abs(imb[layer] - Math.max(...c) / (96 / 4)) < 1e-12, layer);
    }
    assert.equal(m.moe_imbalance, Math.max(...Object.values(imb)));
    assert.equal(m.moe_dropped_frac, 0);
  }
  model.dispose();
});

test('takeExpertLoadMetrics sums forwards since the last call and is null for a dense model', () => {
  k.tidy(() => {
    const model = new k.CausalLM(config, { generator: new k.Generator(1) });
    const ids = k.tensor([[1, 2, 3, 4, 5]], { dtype: 'int64' });
    k.noGrad(() => model.forward({ inputIds: ids }));
    k.noGrad(() => model.forward({ inputIds: ids }));
    const m = takeExpertLoadMetrics(model)!;
    assert.equal(m.expert_counts['model.layers.1.block_sparse_moe'].reduce((a, b) => a + b, 0), 2 * 5 * 2);
    assert.equal(takeExpertLoadMetrics(model), null, 'taken: nothing since');
    const dense = new k.CausalLM(decoderConfig({ model_type: 'llama', vocab_size: 32, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2 }, 'c'));
    assert.equal(takeExpertLoadMetrics(dense), null);
    model.dispose();
    dense.dispose();
  });
});
