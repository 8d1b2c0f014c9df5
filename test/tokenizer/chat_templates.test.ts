// Chat templates against ../shared/fixtures/chat_templates (transformers 4.44.2 apply_chat_template,
// jinja2 3.1.2): every rendering byte for byte, the templates' own errors, templates read from model
// folders, the built-in templates against the real ones they stand for, and template detection.
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  BUILTIN_TEMPLATES, type BuiltinTemplateName, type ChatMessage, TemplateError, applyChatTemplate, detectChatTemplate, loadTokenizer,
} from '../../src/tokenizer/index.js';
import { readTokenizerConfig } from '../../src/tokenizer/tokenizer_config.js';
import { fixture } from '../fixtures.js';

const root = fixture('chat_templates');
const gpt2 = fixture('tokenizers', 'gpt2');
const tmp = mkdtempSync(join(tmpdir(), 'kestrel-chat-'));

interface Expected {
  render_context: { 'special_tokens_map passed to the template': Record<string, string | string[]> };
  renders: Record<string, { text?: string; error?: string }>;
}

const conversations = (): Record<string, ChatMessage[]> => JSON.parse(readFileSync(join(root.path, 'conversations.json'), 'utf8'));
const families = (): string[] => readdirSync(root.path, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
const expected = (family: string): Expected => JSON.parse(readFileSync(join(root.path, family, 'expected.json'), 'utf8'));
const templateOf = (family: string): string => readFileSync(join(root.path, family, 'chat_template.jinja'), 'utf8');

/** Renders like the fixture did; an error comes back as "TemplateError: <message>", as recorded. */
function render(template: string, messages: ChatMessage[], addGenerationPrompt: boolean, specialTokens: Record<string, string | string[]>): string {
  try {
    return applyChatTemplate(messages, { template, addGenerationPrompt, specialTokens });
  } catch (e) {
    assert.ok(e instanceof TemplateError, `expected a TemplateError, got ${e}`);
    return String(e);
  }
}

/** Every recorded rendering of a family, keyed like expected.json ("conversation|add_generation_prompt=..."). */
function* cases(family: string): Generator<{ key: string; messages: ChatMessage[]; agp: boolean; want: string }> {
  const convs = conversations();
  for (const [key, r] of Object.entries(expected(family).renders)) {
    const [conv, agp] = key.split('|');
    yield { key, messages: convs[conv], agp: agp === 'add_generation_prompt=true', want: r.text ?? r.error! };
  }
}

describe('chat templates: fixture renderings', { skip: root.skip }, () => {
  test('every rendering of every family, byte for byte (errors included)', () => {
    const bad: string[] = [];
    let n = 0, errors = 0;
    for (const family of families()) {
      const sp = expected(family).render_context['special_tokens_map passed to the template'];
      for (const c of cases(family)) {
        n++;
        if (c.want.startsWith('TemplateError: ')) errors++;
        const got = render(templateOf(family), c.messages, c.agp, sp);
        if (got !== c.want) bad.push(`${family} ${c.key}:\n  got  ${JSON.stringify(got)}\n  want ${JSON.stringify(c.want)}`);
      }
    }
    assert.equal(families().length, 11);
    assert.ok(n >= 88 && errors >= 8, `only ${n} renderings (${errors} errors) found`);
    assert.deepEqual(bad, [], bad.join('\n'));
  });

  test('the inline tokenizer_config chat_template equals chat_template.jinja', () => {
    for (const family of families()) {
      const dir = join(root.path, family);
      const excerpt = join(dir, 'tokenizer_config.excerpt.json');
      const cfg = readdirSync(dir).includes('tokenizer_config.excerpt.json') ? JSON.parse(readFileSync(excerpt, 'utf8')) : JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
      assert.equal(cfg.chat_template, templateOf(family), family);
    }
    // A real folder: tokenizer_config.json and chat_template.jinja both present.
    const cfg = readTokenizerConfig(join(root.path, 'gemma-2-it'));
    assert.deepEqual(cfg.chatTemplates.map((t) => t.name), ['default']);
    assert.equal(cfg.chatTemplates[0].template, templateOf('gemma-2-it'));
    assert.deepEqual(cfg.additionalSpecialTokens.map((t) => t.content), ['<start_of_turn>', '<end_of_turn>']);
  });
});

/** A minimal tokenizer.json (rendering only needs the config's token strings). */
const TINY_TOKENIZER = JSON.stringify({
  version: '1.0', added_tokens: [], normalizer: null, pre_tokenizer: { type: 'WhitespaceSplit' }, post_processor: null, decoder: null,
  model: { type: 'BPE', vocab: { '<unk>': 0 }, merges: [], unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null },
});

describe('chat templates: through a Tokenizer loaded from a folder', { skip: root.skip }, () => {
  let folders = 0;
  /** A folder with a tokenizer.json and the family's special tokens + template in its config. */
  async function tokenizerFor(config: Record<string, unknown>): Promise<Awaited<ReturnType<typeof loadTokenizer>>> {
    const dir = join(tmp, `folder-${folders++}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'tokenizer.json'), TINY_TOKENIZER);
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
    return loadTokenizer(dir);
  }

  test('string, named-list and chat_template.jinja templates render the fixtures', async () => {
    for (const family of ['llama-2-chat', 'mistral-instruct-v0.1', 'phi-3', 'qwen2-chatml', 'llama-3.1']) {
      const excerpt = JSON.parse(readFileSync(join(root.path, family, 'tokenizer_config.excerpt.json'), 'utf8'));
      const tok = await tokenizerFor(excerpt);
      const listed = await tokenizerFor({ ...excerpt, chat_template: [{ name: 'tool_use', template: 'unused' }, { name: 'default', template: excerpt.chat_template }] });
      for (const c of cases(family)) {
        for (const t of [tok, listed]) {
          let got: string;
          try {
            got = t.applyChatTemplate(c.messages, { addGenerationPrompt: c.agp });
          } catch (e) {
            got = String(e);
          }
          assert.equal(got, c.want, `${family} ${c.key}`);
        }
      }
      assert.equal(listed.chatTemplate('tool_use'), 'unused');
      assert.throws(() => listed.chatTemplate('nope'), /chat template "nope" not found; this tokenizer has tool_use, default/);
    }
    const tok = await tokenizerFor({ bos_token: '<bos>', eos_token: '<eos>' });
    copyFileSync(join(root.path, 'gemma-it', 'chat_template.jinja'), join(tmp, `folder-${folders - 1}`, 'chat_template.jinja'));
    const withFile = await loadTokenizer(join(tmp, `folder-${folders - 1}`));
    assert.equal(tok.chatTemplate(), undefined);
    for (const c of cases('gemma-it')) {
      if (c.want.startsWith('TemplateError')) assert.throws(() => withFile.applyChatTemplate(c.messages, { addGenerationPrompt: c.agp }), { name: 'TemplateError', message: 'System role not supported' });
      else assert.equal(withFile.applyChatTemplate(c.messages, { addGenerationPrompt: c.agp }), c.want);
    }
  });

  test('a tokenizer without a template says so', async () => {
    const tok = await tokenizerFor({ eos_token: '<|im_end|>' });
    assert.throws(() => tok.applyChatTemplate([{ role: 'user', content: 'x' }]), /has no chat template/);
    assert.equal(tok.applyChatTemplate([{ role: 'user', content: 'x' }], { template: 'chatml' }), '<|im_start|>user\nx<|im_end|>\n');
  });
});

describe('chat templates: built-in templates equal the real ones they stand for', { skip: root.skip }, () => {
  // [built-in, fixture family, conversations the built-in covers identically]
  const ALL = ['system_user', 'multi_turn', 'system_assistant_last', 'user_assistant_last'];
  const pairs: [BuiltinTemplateName, string, string[]][] = [
    ['chatml', 'qwen2-chatml', ['system_user', 'system_assistant_last']], // Qwen2 adds a default system prompt
    ['chatml', 'qwen2.5', ['system_user', 'system_assistant_last']],
    ['llama3', 'llama-3', ALL],
    ['llama2', 'llama-2-chat', ALL],
    ['mistral', 'mistral-instruct-v0.1', ALL],
    ['gemma', 'gemma-it', ['multi_turn', 'user_assistant_last']], // the real one raises on a system message
    ['gemma', 'gemma-2-it', ['multi_turn', 'user_assistant_last']],
    ['phi3', 'phi-3', ALL],
    ['zephyr', 'zephyr', ALL],
    ['zephyr', 'tinyllama-zephyr-style', ALL],
  ];
  for (const [name, family, convs] of pairs) {
    test(`${name} = ${family}`, () => {
      const sp = expected(family).render_context['special_tokens_map passed to the template'];
      let n = 0;
      for (const c of cases(family)) {
        if (!convs.includes(c.key.split('|')[0])) continue;
        n++;
        assert.equal(render(name, c.messages, c.agp, sp), c.want, `${name} vs ${family} ${c.key}`);
      }
      assert.equal(n, convs.length * 2);
    });
  }

  test('gemma folds a system prompt into the first user turn; alternation errors come from the template', () => {
    const sp = { bos_token: '<bos>' };
    const msgs: ChatMessage[] = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }];
    assert.equal(render('gemma', msgs, true, sp), '<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n');
    assert.equal(render('gemma', [{ role: 'assistant', content: 'x' }], false, sp), 'TemplateError: Conversation roles must alternate user/assistant/user/assistant/...');
    assert.match(render('llama2', [{ role: 'user', content: 'a' }, { role: 'user', content: 'b' }], false, { bos_token: '<s>', eos_token: '</s>' }), /^TemplateError: Conversation roles must alternate/);
  });

  test('alpaca', () => {
    const msgs: ChatMessage[] = [{ role: 'user', content: 'Add 2 and 2.' }, { role: 'assistant', content: '4' }];
    const preamble = 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n';
    assert.equal(render('alpaca', msgs, false, { eos_token: '</s>' }), `${preamble}### Instruction:\nAdd 2 and 2.\n\n### Response:\n4</s>\n\n`);
    assert.equal(render('alpaca', [{ role: 'system', content: 'Sys.' }, msgs[0]], true, { eos_token: '</s>' }), 'Sys.\n\n### Instruction:\nAdd 2 and 2.\n\n### Response:\n');
  });

  test('every built-in renders a plain conversation', () => {
    for (const name of Object.keys(BUILTIN_TEMPLATES) as BuiltinTemplateName[]) {
      const out = render(name, [{ role: 'user', content: 'Q' }, { role: 'assistant', content: 'A' }], true, { bos_token: '<s>', eos_token: '</s>' });
      assert.ok(out.includes('Q') && out.includes('A') && !out.startsWith('TemplateError'), `${name}: ${out}`);
    }
  });
});

describe('chat templates: detection', () => {
  /** A tokenizer stand-in whose vocabulary is exactly the given tokens. */
  const vocab = (tokens: string[], bosToken: string | null = null) => ({
    bosToken,
    convertTokensToIds: (ts: readonly string[]) => ts.map((t) => (tokens.includes(t) ? tokens.indexOf(t) : undefined)),
  });

  test('from turn-marker tokens', () => {
    assert.equal(detectChatTemplate(vocab(['<|begin_of_text|>', '<|start_header_id|>', '<|end_header_id|>', '<|eot_id|>'])), 'llama3');
    assert.equal(detectChatTemplate(vocab(['<|endoftext|>', '<|im_start|>', '<|im_end|>'])), 'chatml');
    assert.equal(detectChatTemplate(vocab(['<s>', '</s>', '<|user|>', '<|assistant|>', '<|system|>', '<|end|>'], '<s>'), 'llama'), 'phi3');
    assert.equal(detectChatTemplate(vocab(['<s>', '<|user|>', '<|assistant|>', '<|system|>'], '<s>')), 'zephyr');
    assert.equal(detectChatTemplate(vocab(['<s>', '</s>', '[INST]', '[/INST]'], '<s>'), 'llama'), 'mistral');
  });

  test('from a real tokenizer_config.json (gemma-2-it)', { skip: root.skip }, () => {
    const cfg = readTokenizerConfig(join(root.path, 'gemma-2-it'));
    const tokens = [...cfg.addedTokens.values()].map((t) => t.content);
    assert.equal(detectChatTemplate(vocab(tokens, '<bos>'), 'gemma2'), 'gemma');
  });

  test('from model_type when the vocabulary has no markers', () => {
    const llama2Vocab = vocab(['<unk>', '<s>', '</s>'], '<s>');
    assert.equal(detectChatTemplate(llama2Vocab, 'llama'), 'llama2');
    assert.equal(detectChatTemplate(llama2Vocab, 'mistral'), 'mistral');
    assert.equal(detectChatTemplate(llama2Vocab, 'mixtral'), 'mistral');
    assert.equal(detectChatTemplate(vocab(['<bos>', '<eos>'], '<bos>'), 'gemma'), 'gemma');
    assert.equal(detectChatTemplate(vocab(['<|endoftext|>']), 'qwen2'), 'chatml');
    assert.equal(detectChatTemplate(llama2Vocab), null);
    assert.equal(detectChatTemplate(vocab(['<|endoftext|>'], '<|endoftext|>'), 'llama'), null);
    assert.equal(detectChatTemplate(vocab(['<|endoftext|>']), 'gpt2'), null);
  });

  test('real tokenizers', { skip: gpt2.skip }, async () => {
    assert.equal(detectChatTemplate(await loadTokenizer(gpt2.path), 'gpt2'), null);
    const llama = fixture('tokenizers', 'llama2-sentencepiece');
    if (!llama.skip) assert.equal(detectChatTemplate(await loadTokenizer(llama.path), 'llama'), 'llama2');
  });
});
