// config.json values that would give NaN, a misshapen model or an absurd allocation are errors
// naming the file and the field, raised by the config reader before any tensor exists: epsilons,
// rope_theta and rope_scaling factors, head sizes that do not divide, non-integer or non-positive
// sizes, sizes past the bounds, and parameter counts past 2^40. Random-init configs fail there too,
// not at their first forward.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { buildModel, decoderConfig } from '../../src/models/registry.js';
import { gpt2Config } from '../../src/models/gpt2.js';
import { bertConfig } from '../../src/models/bert.js';
import { TINY } from './tiny_llama.js';

const FILE = '/models/tiny/config.json';

/** decoderConfig of TINY with `edit` applied must throw naming FILE and `field`. */
function refuses(edit: Record<string, unknown>, field: string, read: (raw: Record<string, unknown>, file: string) => unknown = decoderConfig, base: Record<string, unknown> = TINY): void {
  assert.throws(() => read({ ...base, ...edit }, FILE), (e: Error) => {
    assert.ok(e.message.startsWith(`${FILE}: `), e.message);
    assert.ok(e.message.includes(`'${field}'`), `${JSON.stringify(edit)}: '${field}' not named in: ${e.message}`);
    return true;
  }, JSON.stringify(edit));
}

describe('config values that give NaN or nonsense', () => {
  test('epsilons and rope_theta must be finite and > 0', () => {
    for (const v of [0, -1e-6, '1e-6', true]) refuses({ rms_norm_eps: v }, 'rms_norm_eps');
    for (const v of [0, -10000, '10000', [10000]]) refuses({ rope_theta: v }, 'rope_theta');
    const gpt2 = { model_type: 'gpt2', vocab_size: 64, n_embd: 16, n_head: 4, n_layer: 2, n_positions: 32 };
    refuses({ layer_norm_epsilon: 0 }, 'layer_norm_epsilon', gpt2Config, gpt2);
    const bert = { model_type: 'bert', vocab_size: 64, hidden_size: 16, num_attention_heads: 4, num_hidden_layers: 1, intermediate_size: 32, max_position_embeddings: 32 };
    refuses({ layer_norm_eps: -1e-12 }, 'layer_norm_eps', bertConfig, bert);
  });

  test('rope_scaling: factors > 0, and the keys each type requires', () => {
    refuses({ rope_scaling: { rope_type: 'linear', factor: 0 } }, 'rope_scaling.factor');
    refuses({ rope_scaling: { type: 'dynamic', factor: -2 } }, 'rope_scaling.factor');
    refuses({ rope_scaling: { rope_type: 'linear' } }, 'rope_scaling.factor');
    refuses({ rope_scaling: { rope_type: 'yarn', factor: 4, beta_fast: 0 } }, 'rope_scaling.beta_fast');
    refuses({ rope_scaling: { rope_type: 'llama3', factor: 8, original_max_position_embeddings: 64, high_freq_factor: 4 } }, 'rope_scaling.low_freq_factor');
    refuses({ rope_scaling: { rope_type: 'llama3', factor: 8, original_max_position_embeddings: 64, low_freq_factor: 2, high_freq_factor: 2 } }, 'rope_scaling.high_freq_factor');
    refuses({ rope_scaling: { rope_type: 'llama3', factor: 8, original_max_position_embeddings: 0, low_freq_factor: 1, high_freq_factor: 4 } }, 'rope_scaling.original_max_position_embeddings');
    // head_dim 4: two frequencies, so two factors each
    refuses({ rope_scaling: { rope_type: 'longrope', short_factor: [1], long_factor: [1, 2] } }, 'rope_scaling.short_factor');
    refuses({ rope_scaling: { rope_type: 'longrope', short_factor: [1, 0], long_factor: [1, 2] } }, 'rope_scaling.short_factor');
    refuses({ rope_scaling: { rope_type: 3 } }, 'rope_scaling.rope_type');
    // a complete one still reads
    const ok = decoderConfig({ ...TINY, rope_scaling: { rope_type: 'llama3', factor: 8, original_max_position_embeddings: 64, low_freq_factor: 1, high_freq_factor: 4 } }, FILE);
    assert.equal(ok.ropeScaling?.factor, 8);
  });

  test('head sizes must divide', () => {
    refuses({ hidden_size: 18 }, 'hidden_size'); // 18 % 4 heads
    refuses({ num_key_value_heads: 3 }, 'num_key_value_heads'); // 4 % 3
    refuses({ num_key_value_heads: 8 }, 'num_key_value_heads'); // more kv heads than heads
    refuses({ head_dim: 5 }, 'head_dim'); // RoPE needs pairs
    refuses({ n_embd: 18 }, 'n_embd', gpt2Config, { model_type: 'gpt2', vocab_size: 64, n_embd: 16, n_head: 4, n_layer: 2, n_positions: 32 });
    refuses({ model_type: 'mixtral', num_local_experts: 2, num_experts_per_tok: 3 }, 'num_experts_per_tok');
  });

  test('sizes must be positive integers', () => {
    for (const field of ['vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'max_position_embeddings'])
      for (const v of [0, -16, 16.5, '16', [16], {}]) refuses({ [field]: v }, field);
  });

  test("model_type 'constructor' or 'toString' is unsupported, not Object.prototype's function", () => {
    for (const t of ['constructor', 'toString', '__proto__', 'hasOwnProperty'])
      assert.throws(() => buildModel({ ...TINY, model_type: t }, FILE), /model_type ".*" is not supported/, t);
  });
});

describe('absurd sizes are refused before anything is allocated', () => {
  test('each size field is bounded, naming it', () => {
    refuses({ num_hidden_layers: 1e9 }, 'num_hidden_layers');
    refuses({ hidden_size: 1e12 }, 'hidden_size');
    refuses({ vocab_size: 1e15 }, 'vocab_size');
    refuses({ intermediate_size: 1e9 }, 'intermediate_size');
    refuses({ num_attention_heads: 2 ** 40 }, 'num_attention_heads');
    refuses({ head_dim: 2 ** 30 }, 'head_dim');
    refuses({ max_position_embeddings: 1e300 }, 'max_position_embeddings');
    refuses({ model_type: 'mixtral', num_local_experts: 1e9, num_experts_per_tok: 2 }, 'num_local_experts');
    refuses({ n_positions: 1e12 }, 'n_positions', gpt2Config, { model_type: 'gpt2', vocab_size: 64, n_embd: 16, n_head: 4, n_layer: 2 });
  });

  test('a parameter count past 2^40 is refused even when every field is in bounds', () => {
    const huge = { hidden_size: 2 ** 17, intermediate_size: 2 ** 20, num_hidden_layers: 1024, num_attention_heads: 1024, num_key_value_heads: 1024 };
    assert.throws(() => decoderConfig({ ...TINY, ...huge }, FILE), (e: Error) => e.message.startsWith(`${FILE}: the config implies`) && /parameters/.test(e.message));
    assert.throws(() => buildModel({ ...TINY, ...huge }, FILE), /the config implies .* parameters/);
  });
});

describe('random-init configs fail at construction, not at the first forward', () => {
  test('kv heads that do not divide the heads, or an odd head_dim', () => {
    for (const [edit, field] of [[{ num_key_value_heads: 3 }, 'num_key_value_heads'], [{ head_dim: 3 }, 'head_dim']] as const)
      assert.throws(() => new k.CausalLM(decoderConfig({ ...TINY, ...edit }, FILE)), (e: Error) => e.message.includes(FILE) && e.message.includes(`'${field}'`));
  });
});
