// `kestrel generate --quant`: the command's greedy ids equal the library's (loadCausalLM with the
// same quant, then generate) on the llama fixture, for every inference format; a bad value is named.
// `--draft-model`: speculative greedy decoding reproduces transformers' greedy ids.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { runCli } from '../helpers.js';
import { fixture } from '../fixtures.js';

const llama = fixture('models', 'llama');

describe('kestrel generate --quant', { skip: llama.skip }, () => {
  const golden = () => JSON.parse(readFileSync(join(llama.path, 'golden.json'), 'utf8')) as { gen: { prompt_ids: number[][] } };
  for (const quant of k.quant.INFERENCE_QUANTS)
    test(`--quant ${quant}: the library's quantized greedy ids`, async () => {
      const prompt = golden().gen.prompt_ids[0];
      const r = runCli(['generate', '--model', llama.path, '--prompt-ids', prompt.join(','), '--max-new-tokens', '8', '--quant', quant, '--json']);
      assert.equal(r.status, 0, r.stderr);
      const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { generated_ids: number[] };
      const { model } = await k.loadCausalLM(llama.path, { quant });
      const ids = k.tensor([prompt], { dtype: 'int64' });
      const want = await k.generate(model, ids, { maxNewTokens: 8, temperature: 0, eosTokenId: [2] });
      assert.deepEqual(out.generated_ids, (want.toArray() as number[][])[0].slice(prompt.length));
      for (const t of [ids, want]) t.dispose();
      model.dispose();
    });

  test('--draft-model: speculative decoding gives transformers greedy ids and reports the acceptance', () => {
    const g = JSON.parse(readFileSync(join(llama.path, 'golden.json'), 'utf8')) as { gen: { prompt_ids: number[][]; new_ids: number[][] } };
    // the model as its own draft: every draft accepted
    const r = runCli(['generate', '--model', llama.path, '--draft-model', llama.path, '--num-draft-tokens', '3', '--prompt-ids', g.gen.prompt_ids[0].join(','), '--max-new-tokens', '12', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { generated_ids: number[]; acceptance_rate: number; target_forwards: number };
    assert.deepEqual(out.generated_ids, g.gen.new_ids[0]);
    assert.equal(out.acceptance_rate, 1);
    assert.equal(out.target_forwards, Math.ceil(11 / 4));
  });

  test('a bad --quant is named before loading', () => {
    const r = runCli(['generate', '--model', llama.path, '--prompt-ids', '1,2', '--quant', 'int4']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /--quant must be one of bf16, int8, q4, got "int4"/);
  });
});
