// Formats -> {inputIds, labels}: -100 exactly where no loss is taken. Chat spans are checked by
// decoding the labelled tokens (gpt2 + the built-in ChatML/Llama-3/Gemma/Zephyr templates, the real
// Hub templates of ../shared/fixtures/chat_templates, and a SentencePiece tokenizer).
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { DataError, type DataRecord, type Example, IGNORE_INDEX, alpacaPrompt, detectFormat, makeEncoder } from '../../src/data/index.js';
import { type ChatMessage, type Tokenizer, loadTokenizer } from '../../src/tokenizer/index.js';
import { fixture } from '../fixtures.js';

const gpt2Dir = fixture('tokenizers', 'gpt2');
const llamaDir = fixture('tokenizers', 'llama2-sentencepiece');
const templates = fixture('chat_templates');
const rec = (value: Record<string, unknown>, line = 1): DataRecord => ({ value, where: { file: 'data.jsonl', line } });
/** The text of the tokens that take loss, and a check that each labelled token is its own id. */
function lossText(tok: Tokenizer, ex: Example): string {
  assert.equal(ex.labels.length, ex.inputIds.length);
  ex.labels.forEach((l, i) => assert.ok(l === IGNORE_INDEX || l === ex.inputIds[i], `label ${i} = ${l} is neither -100 nor the token`));
  return tok.decode(ex.inputIds.filter((_, i) => ex.labels[i] !== IGNORE_INDEX));
}

const conversation: ChatMessage[] = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'Name a prime number.' },
  { role: 'assistant', content: 'Seven.' },
  { role: 'user', content: 'And an even one?' },
  { role: 'assistant', content: 'Two, the only one.' },
];
const replies = ['Seven.', 'Two, the only one.'];

describe('formats', { skip: gpt2Dir.skip }, () => {
  let gpt2: Tokenizer;
  const EOS = '<|endoftext|>';
  before(async () => { gpt2 = await loadTokenizer(gpt2Dir.path, { source: 'vocab.json' }); });

  test('detection from the fields', () => {
    assert.equal(detectFormat(rec({ text: 'x' })), 'text');
    assert.equal(detectFormat(rec({ input_ids: [1], text: 'x' })), 'pretokenized');
    assert.equal(detectFormat(rec({ instruction: 'a', input: '', output: 'b' })), 'alpaca');
    assert.equal(detectFormat(rec({ messages: [] })), 'chat');
    assert.equal(detectFormat(rec({ conversations: [] })), 'sharegpt');
    assert.throws(() => detectFormat(rec({ foo: 1 }, 9)), /^DataError: data.jsonl:9: cannot tell the data format from the fields "foo"/);
  });

  test('text: the tokens then eos, loss everywhere', () => {
    const ex = makeEncoder('text', { tokenizer: gpt2 }).encode(rec({ text: 'Hello world' }));
    assert.deepEqual(ex.inputIds, [...gpt2.encode('Hello world'), 50256]);
    assert.deepEqual(ex.labels, ex.inputIds);
    const other = makeEncoder('text', { tokenizer: gpt2, textField: 'content' }).encode(rec({ content: 'Hi' }));
    assert.deepEqual(other.inputIds, [...gpt2.encode('Hi'), 50256]);
    assert.throws(() => makeEncoder('text', { tokenizer: gpt2 }).encode(rec({ text: 3 }, 4)), /data.jsonl:4: field "text" must be a string, got a number/);
    assert.throws(() => makeEncoder('text', {}), /format text needs a tokenizer/);
  });

  test('text with a tokenizer that adds bos: bos first, eos last', { skip: llamaDir.skip }, async () => {
    const llama = await loadTokenizer(llamaDir.path);
    const ex = makeEncoder('text', { tokenizer: llama }).encode(rec({ text: 'Hello world' }));
    assert.equal(ex.inputIds[0], llama.bosTokenId);
    assert.equal(ex.inputIds.at(-1), llama.eosTokenId);
    assert.deepEqual(ex.inputIds, [...llama.encode('Hello world'), llama.eosTokenId]);
  });

  test('pretokenized: ids as given, labels default to the ids, -100 kept; integers only (ranges: checkTokenIds)', () => {
    const enc = makeEncoder('pretokenized', {});
    assert.deepEqual(enc.encode(rec({ input_ids: [5, 6, 7] })), { inputIds: [5, 6, 7], labels: [5, 6, 7] });
    assert.deepEqual(enc.encode(rec({ input_ids: [5, 6, 7], labels: [-100, 6, 7] })).labels, [-100, 6, 7]);
    assert.throws(() => enc.encode(rec({ input_ids: [] })), /field "input_ids" is empty/);
    assert.throws(() => enc.encode(rec({ input_ids: [1, 2.5] }, 3)), /data.jsonl:3: field "input_ids\[1\]" must be a token id \(an integer\), got 2.5/);
    assert.throws(() => enc.encode(rec({ input_ids: [1, 'x'.repeat(1e6)] }, 3)), /got a string$/); // the value is named, not printed
  });

  test('alpaca: no loss on the prompt; loss on the output and eos', () => {
    const enc = makeEncoder('alpaca', { tokenizer: gpt2 });
    for (const input of [undefined, '', 'the numbers 3 and 4']) {
      const r = { instruction: 'Add the numbers.', ...(input === undefined ? {} : { input }), output: 'The sum is 7.' };
      const ex = enc.encode(rec(r));
      const prompt = alpacaPrompt(r.instruction, input);
      assert.equal(gpt2.decode(ex.inputIds), prompt + r.output + EOS);
      assert.equal(lossText(gpt2, ex), r.output + EOS);
      assert.equal(ex.labels.filter((l) => l === IGNORE_INDEX).length, gpt2.encode(prompt).length);
      assert.equal(prompt.includes('### Input:'), input === 'the numbers 3 and 4');
    }
    assert.throws(() => enc.encode(rec({ instruction: 'x' }, 2)), /data.jsonl:2: missing field "output"/);
  });

  test('chat, gpt2 + ChatML: the loss tokens spell exactly the assistant replies and <|im_end|>', () => {
    const ex = makeEncoder('chat', { tokenizer: gpt2, chatTemplate: 'chatml' }).encode(rec({ messages: conversation }));
    assert.equal(gpt2.decode(ex.inputIds), gpt2.applyChatTemplate(conversation, { template: 'chatml' }));
    assert.equal(lossText(gpt2, ex), replies.map((r) => `${r}<|im_end|>`).join(''));
    // The prompt side: every token up to the first reply is -100.
    const firstReply = gpt2.encode(gpt2.applyChatTemplate(conversation.slice(0, 2), { template: 'chatml', addGenerationPrompt: true }), { addSpecialTokens: false }).length;
    assert.ok(ex.labels.slice(0, firstReply).every((l) => l === IGNORE_INDEX));
    assert.notEqual(ex.labels[firstReply], IGNORE_INDEX);
  });

  test('chat, gpt2 + built-in Gemma, Zephyr, Llama-3 templates: replies and their end markers', () => {
    const want: Record<string, string> = {
      gemma: replies.map((r) => `${r}<end_of_turn>`).join(''),
      zephyr: replies.map((r) => `${r}${EOS}`).join(''),
      // Llama-3's markers are plain text to gpt2: the ">" of <|eot_id|> merges with the next "<" and stays out.
      llama3: replies.map((r, i) => `${r}<|eot_id|${i === replies.length - 1 ? '>' : ''}`).join(''),
    };
    for (const [template, text] of Object.entries(want)) {
      const ex = makeEncoder('chat', { tokenizer: gpt2, chatTemplate: template }).encode(rec({ messages: conversation }));
      assert.equal(lossText(gpt2, ex), text, template);
    }
  });

  test('chat with the real Hub templates (fixtures): replies take loss, prompts do not', { skip: templates.skip }, () => {
    const noSystem = conversation.slice(1);
    let checked = 0;
    for (const family of readdirSync(templates.path).filter((d) => existsSync(join(templates.path, d, 'chat_template.jinja')))) {
      const source = readFileSync(join(templates.path, family, 'chat_template.jinja'), 'utf8');
      const enc = makeEncoder('chat', { tokenizer: gpt2, chatTemplate: source });
      const ex = enc.encode(rec({ messages: noSystem }));
      const text = lossText(gpt2, ex);
      for (const r of replies) assert.ok(text.includes(r), `${family}: loss text ${JSON.stringify(text)} lacks ${JSON.stringify(r)}`);
      for (const m of noSystem.filter((x) => x.role === 'user')) assert.ok(!text.includes(m.content), `${family}: user text takes loss: ${JSON.stringify(text)}`);
      checked++;
    }
    assert.ok(checked >= 8, `only ${checked} templates`);
  });

  test('chat with a SentencePiece tokenizer (Llama 2 template): replies take loss', { skip: llamaDir.skip }, async () => {
    const llama = await loadTokenizer(llamaDir.path);
    for (const template of ['llama2', 'chatml', 'zephyr']) {
      const ex = makeEncoder('chat', { tokenizer: llama, chatTemplate: template }).encode(rec({ messages: conversation }));
      const text = lossText(llama, ex);
      for (const r of replies) assert.ok(text.includes(r), `${template}: ${JSON.stringify(text)}`);
      assert.ok(!text.includes('prime') && !text.includes('even one'), `${template}: ${JSON.stringify(text)}`);
    }
  });

  test('sharegpt maps to chat (human/gpt/system, top-level system) and gives the same example', () => {
    const chat = makeEncoder('chat', { tokenizer: gpt2, chatTemplate: 'chatml' }).encode(rec({ messages: conversation }));
    const from: Record<string, string> = { system: 'system', user: 'human', assistant: 'gpt' };
    const turns = conversation.map((m) => ({ from: from[m.role], value: m.content }));
    const enc = makeEncoder('sharegpt', { tokenizer: gpt2, chatTemplate: 'chatml' });
    assert.deepEqual(enc.encode(rec({ conversations: turns })), chat);
    assert.deepEqual(enc.encode(rec({ system: conversation[0].content, conversations: turns.slice(1) })), chat);
    assert.throws(() => enc.encode(rec({ conversations: [{ from: 'narrator', value: 'x' }] }, 5)),
      /data.jsonl:5: field "conversations\[0\].from" is "narrator"; expected one of human/);
  });

  test('chat errors name the record and field', () => {
    const enc = makeEncoder('chat', { tokenizer: gpt2, chatTemplate: 'chatml' });
    const bad = (messages: unknown, line: number): DataError => {
      try {
        enc.encode(rec({ messages }, line));
      } catch (e) {
        assert.ok(e instanceof DataError);
        return e;
      }
      assert.fail('no error');
    };
    assert.match(bad([{ role: 'user', content: 'hi' }], 2).message, /^data.jsonl:2: the conversation has no assistant message/);
    assert.match(bad([{ role: 'user', content: null }], 3).message, /^data.jsonl:3: field "messages\[0\].content" must be a string, got null/);
    assert.match(bad('hi', 4).message, /^data.jsonl:4: field "messages" must be an array, got a string/);
    const llama2 = makeEncoder('chat', { tokenizer: gpt2, chatTemplate: 'llama2' });
    assert.throws(() => llama2.encode(rec({ messages: [{ role: 'assistant', content: 'x' }] }, 6)), /^DataError: data.jsonl:6: chat template: Conversation roles must alternate/);
    assert.throws(() => makeEncoder('chat', { tokenizer: gpt2 }), /chat data needs a chat template: .* pass chatTemplate \(one of chatml, llama3/);
  });
});
