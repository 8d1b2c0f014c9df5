// `kestrel quantize` end to end on a random llama-shaped model with the GPT-2 tokenizer and a
// small English calibration set. Its norms carry three outlier channels (25x, as trained LLMs'
// activations do; a uniform random model gives AWQ nothing to find): every layer's calibrated output error is no worse than round-to-
// nearest's (AWQ's grid includes α = 0); on held-out text the calibrated model's next-token
// distribution is no further from the float model's (KL) than round-to-nearest's;
// the folder reloads (loadPretrained reads quantization_config) to the same held-out loss the report
// gives, and it generates; bad flags and bad calibration records are named.
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { decoderConfig } from '../../src/models/registry.js';
import { runCli } from '../helpers.js';
import { quantizeCommand } from '../../src/cli/quantize.js';
import { fixture } from '../fixtures.js';

const gpt2tok = fixture('tokenizers', 'gpt2');
const SENTENCES = [
  'The quick brown fox jumps over the lazy dog near the river bank.', 'A journey of a thousand miles begins with a single step.',
  'Water boils at one hundred degrees Celsius at sea level.', 'The library opens at nine in the morning and closes at six.',
  'She planted tomatoes, beans and basil in the small garden.', 'Trains leave the central station every fifteen minutes.',
  'The committee will publish its report early next year.', 'Bright stars were visible above the quiet mountain village.',
  'He repaired the old bicycle with parts from the market.', 'Rain is expected across the northern region this weekend.',
];

describe('kestrel quantize', { skip: gpt2tok.skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-quantize-'));
  const modelDir = join(dir, 'model');
  k.manualSeed(0);
  const hfConfig = {
    model_type: 'llama', vocab_size: 50257, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 512, eos_token_id: 50256, tie_word_embeddings: true,
  };
  const model = new k.CausalLM(decoderConfig(hfConfig, 'config.json'));
  for (const [name, p] of model.namedParameters())
    if (name.endsWith('layernorm.weight')) {
      const w = p.toFloat32Array();
      for (const c of [3, 17, 29]) w[c] = 25;
      model.loadStateDict({ [name]: k.tensor(w) }, { strict: false });
    }
  k.savePretrained(modelDir, { model, hfConfig });
  model.dispose();
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'vocab.json', 'merges.txt']) copyFileSync(join(gpt2tok.path, f), join(modelDir, f));
  const calib = join(dir, 'calib.jsonl');
  writeFileSync(calib, SENTENCES.slice(0, 8).map((text) => JSON.stringify({ text })).join('\n') + '\n');
  const held = join(dir, 'held.jsonl');
  writeFileSync(held, SENTENCES.slice(8).map((text) => JSON.stringify({ text })).join('\n') + '\n');

  for (const format of ['q4', 'int8'] as const)
    test(`--format ${format}: calibrated no worse than round-to-nearest; the folder reloads to the reported loss`, async () => {
      const out = join(dir, `out-${format}`);
      // in process (the command's own function): a child's start-up would double the test's time
      assert.equal(await quantizeCommand(['--model', modelDir, '--calib', calib, '--heldout', held, '--format', format, '--out', out, '--calib-rows', '64', '--json']), 0);
      const rep = JSON.parse(readFileSync(join(out, 'quantize_report.json'), 'utf8')) as {
        heldout: Record<'float32' | 'rtn' | 'awq', { loss: number; klFromFloat32: number }>; layers: { path: string; error: number; rtnError: number }[];
      };
      assert.equal(rep.layers.length, 2 * 7 + 1); // 7 Linears per layer and the tied head
      for (const l of rep.layers) assert.ok(l.error <= l.rtnError, `${l.path}: calibrated ${l.error} > round-to-nearest ${l.rtnError}`);
      const { float32, rtn, awq } = rep.heldout;
      console.log(`# ${format}: held-out loss float32 ${float32.loss.toFixed(5)}, round-to-nearest ${rtn.loss.toFixed(5)} (KL ${rtn.klFromFloat32.toExponential(2)}), AWQ ${awq.loss.toFixed(5)} (KL ${awq.klFromFloat32.toExponential(2)})`);
      // an untrained model's loss sits at ln(V) whatever the weights, so "no worse" is measured as
      // the held-out KL divergence from the float model's next-token distribution
      assert.ok(awq.klFromFloat32 <= rtn.klFromFloat32, `AWQ's KL ${awq.klFromFloat32} > round-to-nearest's ${rtn.klFromFloat32}`);
      // reload: quantization_config names the layers; the held-out loss is the report's
      const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { quantization_config: { quant_method: string; format: string; modules: string[] } };
      assert.equal(cfg.quantization_config.quant_method, 'kestrel');
      assert.equal(cfg.quantization_config.format, format);
      assert.ok(cfg.quantization_config.modules.includes('lm_head'));
      const p = await k.loadCausalLM(out);
      const lm = p.model as k.CausalLM;
      assert.ok(lm.lm_head instanceof k.quant.QuantLinear);
      let [sum, n] = [0, 0];
      for (const text of SENTENCES.slice(8))
        k.tidy(() => {
          const ids = k.tensor([p.tokenizer!.encode(text)], { dtype: 'int64' });
          sum += lm.forward({ inputIds: ids, labels: ids }).loss!.item() * (ids.shape[1] - 1);
          n += ids.shape[1] - 1;
        });
      assert.ok(Math.abs(sum / n - awq.loss) <= 1e-5 * Math.abs(awq.loss), `reloaded loss ${sum / n} vs reported ${awq.loss}`);
      const ids = k.tensor([p.tokenizer!.encode('The river')], { dtype: 'int64' });
      const gen = await lm.generate(ids, { maxNewTokens: 3, temperature: 0, eosTokenId: [] });
      assert.equal(gen.shape[1], ids.shape[1] + 3);
      for (const t of [ids, gen]) t.dispose();
      p.model.dispose();
    });

  test('bad flags and records are named', async () => {
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, '{"text": "fine"}\n{"txt": "typo"}\n');
    const run = (...a: string[]) => quantizeCommand(['--model', modelDir, '--out', join(dir, 'x'), ...a]);
    await assert.rejects(run('--calib', calib, '--format', 'int4'), /--format must be int8 or q4, got 'int4'/);
    await assert.rejects(run('--calib', bad, '--format', 'q4'), /bad\.jsonl:2.*"text"/);
    await assert.rejects(quantizeCommand(['--model', modelDir]), /--model DIR, --calib FILE, --format int8\|q4 and --out DIR are required/);
    assert.match(runCli(['quantize', '--help']).stdout, /kestrel quantize --model \.\/SmolLM2-135M --calib wiki\.jsonl/);
  });
});
