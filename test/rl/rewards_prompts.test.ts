// GRPO's inputs: reward functions (built-ins, a module's exports, checked outputs, weights) and
// prompt data (text or chat through the template, records kept, too-long prompts named by file:line).
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadTokenizer } from '../../src/tokenizer/index.js';
import { loadPromptData } from '../../src/rl/prompts.js';
import { correctness, formatReward, lengthReward, loadRewardModule, scoreCompletions } from '../../src/rl/rewards.js';
import { tinyPreferenceDir } from '../preference/tiny_preference.js';

const dir = tinyPreferenceDir(1);

test('built-in rewards and their weighted sum; a NaN abstains, a wrong-length answer is an error', () => {
  const input = { prompts: ['1+1=', '2+2=', '3+3='], completions: [' 2\nmore', '5', ''], records: [{ answer: '2' }, { answer: '4' }, { answer: '6' }] };
  assert.deepEqual(correctness(input), [1, 0, 0], 'first line, trimmed, against "answer"');
  assert.deepEqual(formatReward(/^\s*\d+$/m)(input), [1, 1, 0]);
  assert.deepEqual(lengthReward(2)(input), [-2.5, -0.5, -1], '-|len - 2| / 2 for lengths 7, 1, 0');
  const { total, perFunction } = scoreCompletions({ correctness, abstain: () => [NaN, 1, 1] }, input, { abstain: 0.5 });
  assert.deepEqual(total, [1, 0.5, 0.5]);
  assert.deepEqual(Object.keys(perFunction), ['correctness', 'abstain']);
  assert.throws(() => scoreCompletions({ short: () => [1] }, input), /reward function short must return 3 numbers/);
  assert.throws(() => scoreCompletions({ inf: () => [1, Infinity, 0] }, input), /reward function inf/);
});

test('a rewards module: every exported function, by name', async () => {
  const file = join(dir, 'my_rewards.mjs');
  writeFileSync(file, 'export const exact = ({ completions }) => completions.map((c) => (c === "x" ? 1 : 0));\nexport function long({ completions }) { return completions.map((c) => c.length); }\nexport const note = "not a function";\n');
  const fns = await loadRewardModule(file);
  assert.deepEqual(Object.keys(fns).sort(), ['exact', 'long']);
  assert.deepEqual(fns.long({ prompts: ['p'], completions: ['abc'], records: [{}] }), [3]);
  await assert.rejects(loadRewardModule(join(dir, 'missing.mjs')), /does not exist/);
  const empty = join(dir, 'empty.mjs');
  writeFileSync(empty, 'export const x = 1;\n');
  await assert.rejects(loadRewardModule(empty), /exports no functions/);
});

test('prompt data: text and chat prompts (generation prompt added), other fields kept, long prompts named', async () => {
  const tokenizer = await loadTokenizer(dir);
  const file = join(dir, 'prompts.jsonl');
  writeFileSync(file, [{ prompt: 'ab:', answer: '1' }, { prompt: [{ role: 'user', content: 'hi' }], answer: '2' }, { prompt: 'x'.repeat(50) }].map((r) => JSON.stringify(r)).join('\n') + '\n');
  await assert.rejects(loadPromptData(file, { tokenizer, maxPromptLength: 40 }), /prompts\.jsonl:3: field "prompt" is 50 tokens, more than the 40 allowed/);
  const ds = await loadPromptData(file, { tokenizer, maxPromptLength: 40, skipBadLines: true });
  assert.equal(ds.length, 2);
  assert.deepEqual(ds.examples[0].ids, [...Buffer.from('ab:')]);
  assert.equal(ds.examples[1].text, '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n', 'ChatML with the generation prompt');
  assert.deepEqual(ds.examples.map((e) => e.record.answer), ['1', '2']);
  const [first] = ds.batches({ batchSize: 2, shuffle: false });
  assert.deepEqual(first.prompts.map((p) => p.record.answer), ['1', '2']);
});
