// DPO on a real model: TRL 1.13's DPOTrainer on the llama fixture (../shared/fixtures/preference/
// dpo_model.json): its collated batch (chosen rows then rejected, right-padded, completion mask),
// the per-token and summed completion log-probs of one concatenated forward, and the sigmoid loss
// with its metrics. The model is float32, so values agree to ~1e-5 relative.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import * as k from '../../src/index.js';
import { loadCausalLM } from '../../src/models/load.js';
import { dpoLoss } from '../../src/preference/dpo_loss.js';
import { pairMetrics } from '../../src/preference/metrics.js';
import { sequenceLogps } from '../../src/preference/logps.js';
import { PairDataset } from '../../src/preference/pair_dataset.js';
import { assertClose } from '../helpers.js';
import { fixture } from '../fixtures.js';

const fx = fixture('preference', 'dpo_model.json');
const model = fixture('models', 'llama');

test('DPO on the llama fixture equals TRL: batch layout, completion log-probs, loss, metrics', { skip: fx.skip || model.skip }, async () => {
  const g = JSON.parse(readFileSync(fx.path, 'utf8'));
  const { model: lm } = await loadCausalLM(model.path);
  const example = (prompt: number[], completion: number[]) => ({ inputIds: [...prompt, ...completion], labels: [...prompt.map(() => -100), ...completion] });
  const triples = g.triples as { prompt_ids: number[]; chosen_ids: number[]; rejected_ids: number[] }[];
  const ds = new PairDataset(triples.map((t) => ({ chosen: example(t.prompt_ids, t.chosen_ids), rejected: example(t.prompt_ids, t.rejected_ids) })), 0, 0);
  const batch = ds.collate([0, 1, 2]);
  assert.deepEqual(batch.rows.inputIds, g.collated.input_ids, 'rows: chosen 0..2 then rejected 0..2, right-padded with 0');
  assert.deepEqual(batch.rows.attentionMask, g.collated.attention_mask);
  assert.deepEqual(batch.rows.labels.map((r) => r.map((l) => (l === -100 ? 0 : 1))), g.collated.completion_mask, 'labels mark the completion tokens');
  k.tidy(() => {
    const { tokenLogps, logps, lengths } = sequenceLogps(lm, batch.rows);
    const perToken = tokenLogps.toArray() as number[][];
    // TRL's per-token list of row r holds its completion tokens in order; ours sit at t - 1 for token t
    const ours = g.collated.completion_mask.map((mask: number[], r: number) => mask.flatMap((m, t) => (m ? [perToken[r][t - 1]] : [])));
    ours.forEach((row: number[], r: number) => assertClose(row, g.policy_completion_token_logps[r], { atol: 1e-5, rtol: 1e-5, what: `row ${r} token log-probs` }));
    assert.deepEqual(lengths, g.collated.completion_mask.map((m: number[]) => m.reduce((a, b) => a + b, 0)));
    const [pc, pr] = [k.narrow(logps, 0, 0, 3), k.narrow(logps, 0, 3, 3)];
    assertClose(pc, g.policy_chosen_logps, { atol: 1e-5, rtol: 1e-5, what: 'chosen log-probs' });
    assertClose(pr, g.policy_rejected_logps, { atol: 1e-5, rtol: 1e-5, what: 'rejected log-probs' });
    const out = dpoLoss({ policyChosen: pc, policyRejected: pr, referenceChosen: k.tensor(g.reference_chosen_logps), referenceRejected: k.tensor(g.reference_rejected_logps) }, { beta: g.beta });
    assertClose(out.perExample, g.per_example_loss, { atol: 1e-5, rtol: 1e-5, what: 'per-example loss' });
    assertClose([out.loss.item()], [g.loss], { atol: 1e-6, rtol: 1e-5, what: 'loss' });
    const m = pairMetrics({ ...out, chosenLogps: pc, rejectedLogps: pr });
    for (const [name, want] of Object.entries(g.metrics as Record<string, number>)) assertClose([m[name as keyof typeof m]], [want], { atol: 1e-5, rtol: 1e-5, what: name });
  });
  lm.dispose();
});
