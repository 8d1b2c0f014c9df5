// The generate and chat commands end to end: greedy ids equal transformers' on a fixture,
// --json fields, a text prompt through a tokenizer, and a scripted chat session with
// /system, /reset and /exit on a random model that shares the GPT-2 tokenizer's vocabulary.
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { decoderConfig } from '../../src/models/registry.js';
import { runCli } from '../helpers.js';
import { fixture } from '../fixtures.js';

const llama = fixture('models', 'llama');
const gpt2tok = fixture('tokenizers', 'gpt2');

describe('kestrel generate', () => {
  test('--prompt-ids --json reproduces transformers greedy ids', { skip: llama.skip }, () => {
    const golden = JSON.parse(readFileSync(join(llama.path, 'golden.json'), 'utf8')) as { gen: { prompt_ids: number[][]; new_ids: number[][] } };
    const r = runCli(['generate', '--model', llama.path, '--prompt-ids', golden.gen.prompt_ids[0].join(','), '--max-new-tokens', '12', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    assert.deepEqual(out.prompt_ids, golden.gen.prompt_ids[0]);
    assert.deepEqual(out.generated_ids, golden.gen.new_ids[0]);
    assert.equal(out.text, null);
    assert.ok(out.prefill_tokens_per_sec > 0 && out.decode_tokens_per_sec > 0);
  });

  test('bad flags are clear errors', { skip: llama.skip }, () => {
    const r = runCli(['generate', '--model', llama.path, '--prompt-ids', '1,x']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /--prompt-ids: 'x' is not a token id/);
    assert.match(runCli(['generate', '--model', llama.path, '--prompt', 'hi']).stderr, /has no tokenizer/);
    assert.match(runCli(['generate', '--model', llama.path]).stderr, /exactly one of --prompt TEXT or --prompt-ids/);
    assert.match(runCli(['generate', '--model', llama.path, '--prompt-ids', '1', '--temperature', 'hot']).stderr, /--temperature must be a number/);
  });
});

describe('kestrel chat and generate --prompt with a tokenizer', { skip: gpt2tok.skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-chat-'));
  k.manualSeed(0);
  const hfConfig = {
    model_type: 'llama', vocab_size: 50257, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1,
    num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 512, eos_token_id: 50256,
  };
  const model = new k.CausalLM(decoderConfig(hfConfig, "config.json"));
  k.savePretrained(dir, { model, hfConfig });
  model.dispose();
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'vocab.json', 'merges.txt']) copyFileSync(join(gpt2tok.path, f), join(dir, f));

  test('generate --prompt streams decoded text', () => {
    const r = runCli(['generate', '--model', dir, '--prompt', 'Hello', '--max-new-tokens', '5', '--json']);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim());
    assert.deepEqual(out.prompt_ids, [15496]);
    assert.equal(out.generated_ids.length, 5);
    assert.equal(typeof out.text, 'string');
  });

  test('a scripted chat session', () => {
    const r = runCli(['chat', '--model', dir, '--max-new-tokens', '3', '--seed', '1'], 'Hi there\n/system Be brief.\nAnd now?\n/reset\n/exit\n');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /system prompt set; conversation cleared/);
    assert.match(r.stdout, /conversation cleared/);
  });
});

