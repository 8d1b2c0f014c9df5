// Speculative decoding (src/infer/speculative.ts) on the llama fixture as the target: the output
// equals plain greedy decoding (transformers' golden ids for 12 tokens, and Kestrel's own greedy
// run for 40) whatever the draft: the target itself (every draft accepted: acceptance 1, a round
// per k + 1 tokens), a draft whose logits are all zero (argmax token 0, which the target never
// picks here: acceptance 0, one token per target forward), and a small random model of the same
// vocabulary, and the target's own q4 copy (partly agreeing); for k = 1, 3, 5; with an eos inside the output; through generate({ draftModel }).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { decoderConfig } from '../../src/models/registry.js';
import { skipUnless } from '../devices.js';
import { fixture } from '../fixtures.js';

const llama = fixture('models', 'llama');

function smallDraft(zeroLogits: boolean): k.CausalLM {
  k.manualSeed(zeroLogits ? 1 : 2);
  const m = new k.CausalLM(decoderConfig({
    model_type: 'llama', vocab_size: 256, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
    num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 128, tie_word_embeddings: true,
  }, 'draft config')).eval();
  // a zero final norm makes every hidden state, hence every logit, 0: the argmax is token 0
  if (zeroLogits) m.loadStateDict({ 'model.norm.weight': k.zeros([32]) }, { strict: false });
  return m;
}

describe('speculative decoding', { skip: llama.skip || skipUnless('cpu') }, () => {
  const golden = () => JSON.parse(readFileSync(join(llama.path, 'golden.json'), 'utf8')) as { gen: { prompt_ids: number[][]; new_ids: number[][] } };

  test('equals transformers greedy ids with agreeing, disagreeing and random drafts, k = 1, 3, 5', async () => {
    const { model } = await k.loadCausalLM(llama.path, { backend: 'cpu' });
    const { prompt_ids: [prompt], new_ids: [want] } = golden().gen;
    assert.ok(!want.includes(0), 'the fixture never picks token 0 (the zero-logit draft always proposes it)');
    // the target's q4 copy: a realistic draft that agrees only sometimes (partial acceptance, rollbacks mid-draft)
    const { model: q4 } = await k.loadCausalLM(llama.path, { backend: 'cpu', quant: 'q4' });
    const drafts = { self: model, zero: smallDraft(true), random: smallDraft(false), q4 };
    for (const [name, draft] of Object.entries(drafts))
      for (const numDraftTokens of [1, 3, 5]) {
        const { tokens, stats } = k.speculativeDecode(model, prompt, { draftModel: draft, numDraftTokens, maxNewTokens: want.length, eos: [] });
        const what = `${name} draft, k = ${numDraftTokens}`;
        assert.deepEqual(tokens, want, what);
        console.log(`# ${what}: acceptance ${stats.acceptanceRate.toFixed(2)}, ${stats.targetForwards} target forwards for ${stats.newTokens} tokens`);
        if (name === 'self') {
          assert.equal(stats.acceptanceRate, 1, what);
          // the prefill gives token 1; each round k + 1 more (the last round may be cut by maxNewTokens)
          assert.equal(stats.targetForwards, Math.ceil((want.length - 1) / (numDraftTokens + 1)), what);
        }
        if (name === 'q4' && numDraftTokens > 1) assert.ok(stats.accepted > 0 && stats.accepted < stats.drafted, `${what}: partial acceptance`);
        if (name === 'zero') {
          assert.equal(stats.accepted, 0, what);
          assert.equal(stats.targetForwards, want.length - 1, what);
        }
      }
    drafts.zero.dispose();
    q4.dispose();
    drafts.random.dispose();
    model.dispose();
  });

  test('40 tokens, an eos inside, and generate({ draftModel }) equal plain greedy generate', async () => {
    const { model } = await k.loadCausalLM(llama.path, { backend: 'cpu' });
    const draft = smallDraft(false);
    const { prompt_ids: [prompt], new_ids: [want] } = golden().gen;
    const ids = k.tensor([prompt], { dtype: 'int64', backend: 'cpu' });
    for (const eosTokenId of [[], [want[4]]]) {
      const plain = (await k.generate(model, ids, { maxNewTokens: 40, temperature: 0, eosTokenId })).toArray() as number[][];
      const spec = (await k.generate(model, ids, { maxNewTokens: 40, temperature: 0, eosTokenId, draftModel: draft, numDraftTokens: 4 })).toArray() as number[][];
      assert.deepEqual(spec, plain, `eos ${JSON.stringify(eosTokenId)}`);
      if (eosTokenId.length) assert.equal(spec[0].length, prompt.length + 5);
    }
    ids.dispose();
    draft.dispose();
    model.dispose();
  });

  test('what it cannot do is a clear error', async () => {
    const { model } = await k.loadCausalLM(llama.path, { backend: 'cpu' });
    const draft = smallDraft(false);
    const two = k.tensor([[1, 2], [3, 4]], { dtype: 'int64', backend: 'cpu' });
    const one = k.tensor([[1, 2]], { dtype: 'int64', backend: 'cpu' });
    await assert.rejects(k.generate(model, two, { draftModel: draft, temperature: 0 }), /takes one sequence \[1, T\], got \[2, 2\]/);
    await assert.rejects(k.generate(model, one, { draftModel: draft, temperature: 0.7 }), /speculative decoding \(draftModel\) is greedy/);
    k.manualSeed(3);
    const otherVocab = new k.CausalLM(decoderConfig({ model_type: 'llama', vocab_size: 300, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1 }, 'draft'));
    assert.throws(() => k.speculativeDecode(model, [1, 2], { draftModel: otherVocab, maxNewTokens: 4, eos: [] }), /draft's vocabulary \(300 logits\) differs from the target's \(256\)/);
    for (const t of [two, one, otherVocab, draft, model]) t.dispose();
  });
});
