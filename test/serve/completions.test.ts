// `kestrel serve` driven by the official openai client (6.49.0) on a tiny random Llama: each
// answer is checked against the same folder loaded in this process — greedy text equals
// model.generate's, logprobs equal a float64 log-softmax of a full forward's logits, stop strings
// cut the text, n > 1 with a seed equals the seeded batch, concurrent requests equal single runs,
// and the adapter served by name equals the base with that adapter loaded.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as k from '../../src/index.js';
import type { Pretrained } from '../../src/models/load.js';
import { loadAdapter } from '../../src/lora/peft.js';
import { logSoftmax } from '../../src/infer/sampling.js';
import { JsonPrefix } from '../../src/infer/json_prefix.js';
import { assertClose } from '../helpers.js';
import { type RunningServer, removeFixture, startServer, writeServeFixture } from './serve_fixture.js';

const EOS = 258; // <|im_end|>
const fx = writeServeFixture();
let server: RunningServer;
let base: Pretrained;
let tuned: Pretrained;

/** The continuation model.generate picks (ids after the prompt, up to and without eos). */
async function reference(p: Pretrained, prompt: number[], opts: k.GenerateOptions): Promise<number[]> {
  const model = p.model as k.CausalLM;
  const out = await model.generate(k.tensor([prompt], { dtype: 'int64' }), { eosTokenId: [EOS], ...opts });
  const ids = (out.toArray() as number[][])[0].slice(prompt.length);
  out.dispose();
  const end = ids.indexOf(EOS);
  return end >= 0 ? ids.slice(0, end) : ids;
}

const text = (ids: number[]): string => base.tokenizer!.decode(ids, { skipSpecialTokens: true });
const encode = (s: string): number[] => base.tokenizer!.encode(s, { addSpecialTokens: false });
/** ChatML as the byte tokenizer's template writes it (written out here, not rendered by the code under test). */
const chatml = (user: string): string => `<|im_start|>user\n${user}<|im_end|>\n<|im_start|>assistant\n`;

before(async () => {
  server = await startServer(['--model', `tiny=${fx.modelDir}`, '--adapter', `tuned=${fx.adapterDir}`]);
  base = await k.loadCausalLM(fx.modelDir);
  tuned = await k.loadCausalLM(fx.modelDir);
  loadAdapter(tuned.model, fx.adapterDir);
});

after(async () => {
  await server?.stop();
  base?.model.dispose();
  tuned?.model.dispose();
  removeFixture(fx.root);
});

describe('kestrel serve: completions', () => {
  test('a greedy text completion equals model.generate, streamed and not', async () => {
    const c = server.client();
    const want = await reference(base, encode('The sky'), { maxNewTokens: 12, temperature: 0 });
    const r = await c.completions.create({ model: 'tiny', prompt: 'The sky', max_tokens: 12, temperature: 0 });
    assert.equal(r.choices[0].text, text(want));
    assert.equal(r.choices[0].finish_reason, want.length === 12 ? 'length' : 'stop');
    assert.deepEqual(r.usage, { prompt_tokens: 7, completion_tokens: want.length, total_tokens: 7 + want.length });
    const stream = await c.completions.create({ model: 'tiny', prompt: 'The sky', max_tokens: 12, temperature: 0, stream: true });
    let streamed = '';
    for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? '';
    assert.equal(streamed, text(want));
  });

  test('a prompt as token ids, and a list of prompts (left-padded into one batch), equal their single runs', async () => {
    const c = server.client();
    const prompts = [[72, 105], [84, 104, 101, 32, 115, 107]];
    const r = await c.completions.create({ model: 'tiny', prompt: prompts, max_tokens: 8, temperature: 0 });
    assert.equal(r.choices.length, 2);
    for (const [i, p] of prompts.entries()) assert.equal(r.choices[i].text, text(await reference(base, p, { maxNewTokens: 8, temperature: 0 })), `prompt ${i}`);
    const single = await c.completions.create({ model: 'tiny', prompt: prompts[1], max_tokens: 8, temperature: 0 });
    assert.equal(single.choices[0].text, r.choices[1].text);
  });

  test('chat renders the model folder\'s template; streamed deltas add up to the whole answer', async () => {
    const c = server.client();
    const want = text(await reference(base, encode(chatml('Hi there')), { maxNewTokens: 10, temperature: 0 }));
    const r = await c.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'Hi there' }], max_tokens: 10, temperature: 0 });
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(r.choices[0].message.content, want);
    assert.equal(r.usage?.prompt_tokens, encode(chatml('Hi there')).length);
    const stream = await c.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'Hi there' }], max_tokens: 10, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let streamed = '';
    let roles = 0;
    let usage: unknown = null;
    const reasons: (string | null)[] = [];
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const ch of chunk.choices) {
        streamed += ch.delta.content ?? '';
        if (ch.delta.role) roles++;
        reasons.push(ch.finish_reason);
      }
    }
    assert.equal(streamed, want);
    assert.equal(roles, 1);
    assert.equal(reasons.filter((x) => x !== null).length, 1, 'one finish_reason, on the last chunk');
    assert.deepEqual(usage, r.usage);
  });

  test('tools reach the chat template (it lists their names in a system turn)', async () => {
    const c = server.client();
    const tools = [{ type: 'function' as const, function: { name: 'get_time', parameters: {} } }, { type: 'function' as const, function: { name: 'get_date', parameters: {} } }];
    const prompt = encode(`<|im_start|>system\nTools: get_time get_date<|im_end|>\n${chatml('When?')}`);
    const r = await c.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'When?' }], tools, max_tokens: 8, temperature: 0 });
    assert.equal(r.usage?.prompt_tokens, prompt.length);
    assert.equal(r.choices[0].message.content, text(await reference(base, prompt, { maxNewTokens: 8, temperature: 0 })));
  });

  test('logprobs equal the log-softmax of the logits of a full forward (float64), top_logprobs the k largest', async () => {
    const c = server.client();
    const prompt = encode(chatml('Why?'));
    const r = await c.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'Why?' }], max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 3 });
    const content = r.choices[0].logprobs!.content!;
    const ids = await reference(base, prompt, { maxNewTokens: 6, temperature: 0 });
    assert.equal(content.length, ids.length);
    const logits = k.noGrad(() => (base.model as k.CausalLM).forward({ inputIds: k.tensor([[...prompt, ...ids]], { dtype: 'int64' }) }).logits!);
    const all = logits.toFloat32Array();
    logits.dispose();
    const V = (base.model as k.CausalLM).config.vocabSize;
    ids.forEach((id, t) => {
      const row = all.slice((prompt.length - 1 + t) * V, (prompt.length + t) * V);
      const lp = logSoftmax(row);
      assertClose([content[t].logprob], [lp[id]], { atol: 1e-4, rtol: 1e-4, what: `logprob of token ${t}` });
      const top = [...lp].sort((a, b) => b - a).slice(0, 3);
      assertClose(content[t].top_logprobs.map((x) => x.logprob), top, { atol: 1e-4, rtol: 1e-4, what: `top logprobs at ${t}` });
      assert.deepEqual(content[t].bytes, [...Buffer.from(base.tokenizer!.decode([id]))]);
    });
    const comp = await c.completions.create({ model: 'tiny', prompt, max_tokens: 6, temperature: 0, logprobs: 2 });
    // the same prompt again reuses the chat request's cached prefix blocks, so only its last block's
    // tokens go through the matmuls, whose float32 rounding differs with the row count (~1e-6)
    assertClose(comp.choices[0].logprobs!.token_logprobs!, content.map((x) => x.logprob), { atol: 1e-5, rtol: 0, what: 'completions token_logprobs' });
  });

  test('a stop string ends the text before it (the stop string is not returned)', async () => {
    const c = server.client();
    const full = text(await reference(base, encode('Once'), { maxNewTokens: 16, temperature: 0 }));
    // a stop string taken from inside the greedy answer: the answer must end right before its first occurrence
    const stop = [...full.slice(4, 6)].join('');
    const cut = full.indexOf(stop);
    assert.ok(cut >= 0 && stop.length === 2, `fixture answer '${full}' is long enough`);
    for (const stream of [false, true]) {
      let got = '';
      let reason: string | null = null;
      if (stream) {
        for await (const chunk of await c.completions.create({ model: 'tiny', prompt: 'Once', max_tokens: 16, temperature: 0, stop: ['@@never', stop], stream: true })) {
          got += chunk.choices[0]?.text ?? '';
          reason = chunk.choices[0]?.finish_reason ?? reason;
        }
      } else {
        const r = await c.completions.create({ model: 'tiny', prompt: 'Once', max_tokens: 16, temperature: 0, stop: ['@@never', stop] });
        got = r.choices[0].text;
        reason = r.choices[0].finish_reason;
      }
      assert.equal(got, full.slice(0, cut), `stream ${stream}`);
      assert.equal(reason, 'stop');
    }
  });

  test('n > 1 with a seed: the same seed repeats, choices differ, and equal a seeded batch of n rows', async () => {
    const c = server.client();
    const ask = (seed: number) => c.completions.create({ model: 'tiny', prompt: 'Tell', max_tokens: 8, temperature: 1, top_p: 0.95, n: 3, seed, ignore_eos: true } as never);
    const [a, b, other] = await Promise.all([ask(11), ask(11), ask(12)]);
    const texts = (r: typeof a) => r.choices.map((x: { text: string }) => x.text);
    assert.deepEqual(texts(a), texts(b));
    assert.notDeepEqual(texts(a), texts(other));
    assert.ok(new Set(texts(a)).size > 1, 'three samples are not all equal');
    const p = encode('Tell');
    const out = await (base.model as k.CausalLM).generate(k.tensor([p, p, p], { dtype: 'int64' }), { maxNewTokens: 8, temperature: 1, topP: 0.95, topK: 0, seed: 11, eosTokenId: [] });
    assert.deepEqual(texts(a), (out.toArray() as number[][]).map((row) => text(row.slice(p.length))));
    out.dispose();
  });

  test('concurrent requests of different lengths each equal their single run', async () => {
    const c = server.client();
    const asks = ['a', 'bb', 'ccc dd', 'e', 'ffff ggg hh'].map((prompt, i) => ({ prompt, max_tokens: 4 + 3 * i }));
    const together = await Promise.all(asks.map((a) => c.completions.create({ model: 'tiny', ...a, temperature: 0 })));
    for (const [i, a] of asks.entries()) {
      const want = text(await reference(base, encode(a.prompt), { maxNewTokens: a.max_tokens, temperature: 0 }));
      assert.equal(together[i].choices[0].text, want, `request ${i}`);
    }
  });

  test('logit_bias shifts the chosen logits: +100 forces a token, -100 bans the greedy one', async () => {
    const c = server.client();
    const forced = await c.completions.create({ model: 'tiny', prompt: 'Bias', max_tokens: 5, temperature: 0, logit_bias: { 120: 100 } });
    assert.equal(forced.choices[0].text, 'xxxxx');
    // a prompt whose greedy token prints as itself (high bytes all print as U+FFFD and would not tell tokens apart)
    let prompt = '';
    let greedy = '';
    for (const p of ['Bias', 'Hello', 'The sky', 'Once', 'a', 'Why?', 'Tell']) {
      greedy = text(await reference(base, encode(p), { maxNewTokens: 1, temperature: 0 }));
      prompt = p;
      if (greedy && !greedy.includes('\uFFFD')) break;
    }
    assert.ok(greedy && !greedy.includes('\uFFFD'), 'a prompt with a printable greedy token');
    const plain = await c.completions.create({ model: 'tiny', prompt, max_tokens: 1, temperature: 0 });
    assert.equal(plain.choices[0].text, greedy);
    const banned = await c.completions.create({ model: 'tiny', prompt, max_tokens: 1, temperature: 0, logit_bias: { [encode(greedy)[0]]: -100 } });
    assert.notEqual(banned.choices[0].text, greedy);
  });

  test('response_format json_object constrains the answer to a JSON object', async () => {
    const c = server.client();
    const messages = [{ role: 'user' as const, content: 'Reply in JSON' }];
    const free = await c.chat.completions.create({ model: 'tiny', messages, max_tokens: 40, temperature: 0 });
    assert.throws(() => JSON.parse(free.choices[0].message.content!), 'unconstrained, the random model writes no JSON');
    const r = await c.chat.completions.create({ model: 'tiny', messages, max_tokens: 40, temperature: 0, response_format: { type: 'json_object' } });
    assert.equal(r.choices[0].finish_reason, 'stop');
    const value: unknown = JSON.parse(r.choices[0].message.content!);
    assert.ok(typeof value === 'object' && value !== null && !Array.isArray(value));
    // sampled answers may run out of tokens, but are always the beginning of a JSON object
    const sampled = await c.chat.completions.create({ model: 'tiny', messages, max_tokens: 30, temperature: 1, seed: 1, n: 3, response_format: { type: 'json_object' } });
    for (const ch of sampled.choices) assert.ok(new JsonPrefix({ objectOnly: true, maxWhitespace: 1000 }).feedText(ch.message.content!), ch.message.content!);
  });

  test('embeddings: unit-length means of the last hidden states (float64 reference), base64 and float alike, per adapter', async () => {
    const c = server.client();
    const inputs = ['hello world', 'a much longer sentence to embed'];
    const expected = (p: Pretrained, s: string): number[] => {
      const h = k.noGrad(() => (p.model as k.CausalLM).forward({ inputIds: k.tensor([encode(s)], { dtype: 'int64' }), outputHiddenStates: true }).hiddenStates.at(-1)!);
      const [, T, D] = h.shape;
      const x = h.toFloat32Array();
      h.dispose();
      const m = Array.from({ length: D }, (_, d) => Array.from({ length: T }, (_, t) => x[t * D + d]).reduce((a, b) => a + b) / T);
      const norm = Math.hypot(...m);
      return m.map((v) => v / norm);
    };
    const b64 = await c.embeddings.create({ model: 'tiny', input: inputs }); // the client asks for base64 and decodes it
    const float = await c.embeddings.create({ model: 'tiny', input: inputs, encoding_format: 'float' });
    assert.equal(b64.data.length, 2);
    for (const [i, s] of inputs.entries()) {
      assertClose(b64.data[i].embedding, expected(base, s), { atol: 1e-5, rtol: 1e-4, what: `embedding ${i}` });
      assert.deepEqual(float.data[i].embedding, b64.data[i].embedding, 'float and base64 carry the same float32 values');
    }
    assert.deepEqual(b64.usage, { prompt_tokens: encode(inputs[0]).length + encode(inputs[1]).length, total_tokens: encode(inputs[0]).length + encode(inputs[1]).length });
    const adapted = await c.embeddings.create({ model: 'tuned', input: [72, 105], encoding_format: 'float' });
    assertClose(adapted.data[0].embedding, expected(tuned, 'Hi'), { atol: 1e-5, rtol: 1e-4, what: 'adapter embedding' });
    const bad = await c.embeddings.create({ model: 'tiny', input: 'x', dimensions: 8 }).then(() => null, (e: { status: number; param: string }) => e);
    assert.deepEqual([bad?.status, bad?.param], [400, 'dimensions']);
  });

  test('the adapter is served under its name and equals the base model with that adapter loaded', async () => {
    const c = server.client();
    const models = await c.models.list();
    assert.deepEqual(models.data.map((m) => m.id), ['tiny', 'tuned']);
    const prompt = encode('Adapt');
    const [wantBase, wantTuned] = [await reference(base, prompt, { maxNewTokens: 10, temperature: 0 }), await reference(tuned, prompt, { maxNewTokens: 10, temperature: 0 })];
    assert.notDeepEqual(wantBase, wantTuned, 'the fixture adapter changes the greedy answer');
    const [gotTuned, gotBase] = await Promise.all(['tuned', 'tiny'].map((model) => c.completions.create({ model, prompt: 'Adapt', max_tokens: 10, temperature: 0 })));
    assert.equal(gotTuned.choices[0].text, text(wantTuned));
    assert.equal(gotBase.choices[0].text, text(wantBase));
  });
});
