// Suggested sampling settings: generation_config.json's values win, then Unsloth's documented
// settings for the family (Qwen3: 0.6 / 0.95 / 20 / 0; Gemma 3: 1.0 / 0.95 / 64 / 0, from their
// guides), then a default by instruct (a chat template) or base; each value says where it came from.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { suggestParams } from '../../src/serve/suggested_params.js';

const values = (s: ReturnType<typeof suggestParams>): Record<string, number> => Object.fromEntries(s.map((p) => [p.name, p.value]));
const reasons = (s: ReturnType<typeof suggestParams>): Record<string, string> => Object.fromEntries(s.map((p) => [p.name, p.reason]));

test("generation_config.json's values are used as they are", () => {
  const s = suggestParams('llama', { temperature: 0.6, top_p: 0.9, repetition_penalty: 1.1, eos_token_id: 2 }, true);
  assert.deepEqual(values(s), { temperature: 0.6, top_p: 0.9, repetition_penalty: 1.1 });
  assert.deepEqual(new Set(Object.values(reasons(s))), new Set(['generation_config.json']));
});

test("a family Unsloth documents gets its settings where generation_config.json is silent", () => {
  assert.deepEqual(values(suggestParams('qwen3', {}, true)), { temperature: 0.6, top_p: 0.95, top_k: 20, min_p: 0 });
  const gemma = suggestParams('gemma3', { top_k: 50 }, true);
  assert.deepEqual(values(gemma), { temperature: 1.0, top_p: 0.95, top_k: 50, min_p: 0 });
  assert.equal(reasons(gemma).top_k, 'generation_config.json');
  assert.match(reasons(gemma).temperature, /Unsloth's Gemma 3 settings/);
});

test('otherwise instruct and base models differ in temperature, and do_sample false means greedy', () => {
  const instruct = suggestParams('llama', {}, true);
  const base = suggestParams('llama', {}, false);
  assert.deepEqual(values(instruct), { temperature: 0.7, top_p: 0.95 });
  assert.deepEqual(values(base), { temperature: 1.0, top_p: 0.95 });
  assert.match(reasons(base).temperature, /a base model \(no chat template\)/);
  assert.deepEqual(values(suggestParams('qwen3', { do_sample: false }, true)).temperature, 0);
});
