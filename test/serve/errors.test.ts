// The server's contract under bad input and load: every malformed body gets OpenAI's error JSON
// (400, or 404 for an unknown model) naming the field while the server keeps serving; a full queue
// answers 429 with Retry-After; a client that disconnects stops its generation; --api-key makes
// /v1 answer 401 without the Bearer key; /health and /metrics report what the server did.
// (`serve --help` is checked with every command's in test/cli/help.test.ts.)
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { runCli } from '../helpers.js';
import { type RunningServer, removeFixture, startServer, writeServeFixture } from './serve_fixture.js';

const fx = writeServeFixture();
let server: RunningServer;

before(async () => {
  // --max-batch 8: one request with n = 8 fills the continuous batch, so the next one must queue
  server = await startServer(['--model', `tiny=${fx.modelDir}`, '--max-queue', '0', '--max-batch', '8', '--kv-cache-mb', '4', '--max-body-bytes', '4096']);
});

after(async () => {
  await server?.stop();
  removeFixture(fx.root);
});

/** The APIError a request fails with (the test fails if it succeeds). */
async function failure(p: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await p;
  } catch (e) {
    if (e instanceof OpenAI.APIError) return e;
    throw e;
  }
  assert.fail('the request succeeded but should have failed');
}

async function post(path: string, body: string): Promise<{ status: number; json: { error: { message: string; type: string; param: string | null; code: string | null } } }> {
  const r = await fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  return { status: r.status, json: (await r.json()) as Awaited<ReturnType<typeof post>>["json"] };
}

const metric = async (url: string, name: string): Promise<number> => {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || (!name.includes('{') && l.startsWith(`${name}{`)));
  assert.ok(line, `metric ${name} in\n${text}`);
  return Number(line.split(' ').at(-1));
};

describe('kestrel serve: bad requests', () => {
  const chat = { model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3 };
  const cases: [what: string, body: Record<string, unknown>, status: number, param: string | null, message: RegExp][] = [
    ['missing messages', { model: 'tiny' }, 400, 'messages', /'messages' is required/],
    ['messages not a list', { model: 'tiny', messages: 'hi' }, 400, 'messages', /must be an array, got string/],
    ['a message without content', { model: 'tiny', messages: [{ role: 'user' }] }, 400, 'messages[0].content', /is required/],
    ['content of the wrong type', { model: 'tiny', messages: [{ role: 'user', content: 'a' }, { role: 'user', content: 7 }] }, 400, 'messages[1].content', /must be a string or a list of content parts, got number/],
    ['a role that is not a string', { model: 'tiny', messages: [{ role: 3, content: 'a' }] }, 400, 'messages[0].role', /non-empty string/],
    ['temperature as a string', { ...chat, temperature: 'hot' }, 400, 'temperature', /'temperature' must be a number/],
    ['temperature out of range', { ...chat, temperature: 3 }, 400, 'temperature', /<= 2, got 3/],
    ['huge n', { ...chat, n: 1000 }, 400, 'n', /'n' must be an integer >= 1 <= 16, got 1000/],
    ['negative max_tokens', { ...chat, max_tokens: -5 }, 400, 'max_tokens', /'max_tokens' must be an integer >= 1, got -5/],
    ['fractional max_tokens', { ...chat, max_tokens: 2.5 }, 400, 'max_tokens', /an integer/],
    ['max_tokens past the context', { ...chat, max_tokens: 1000 }, 400, 'max_tokens', /maximum context length is 160 tokens; the prompt has 21 tokens and 'max_tokens' asks for 1000/],
    ['stream as a string', { ...chat, stream: 'yes' }, 400, 'stream', /'stream' must be a boolean/],
    ['stop as a number', { ...chat, stop: 5 }, 400, 'stop', /'stop' must be a non-empty string or a list of at most 4/],
    ['top_logprobs without logprobs', { ...chat, top_logprobs: 2 }, 400, 'top_logprobs', /needs 'logprobs': true/],
    ['a json_schema response_format', { ...chat, response_format: { type: 'json_schema' } }, 400, 'response_format.type', /json_schema is not supported/],
    ['json_object without asking for JSON', { ...chat, response_format: { type: 'json_object' } }, 400, 'messages', /must contain the word 'json'/],
    ['a logit_bias key that is no token', { ...chat, logit_bias: { 999: 1 } }, 400, 'logit_bias', /key '999' must be a token id in \[0, 259\)/],
    ['a logit_bias value out of range', { ...chat, logit_bias: { 5: 101 } }, 400, 'logit_bias', /'logit_bias.5' must be a number in \[-100, 100\], got 101/],
    ['an unknown model', { ...chat, model: 'gpt-5' }, 404, 'model', /the model 'gpt-5' does not exist; this server has 'tiny'/],
    ['no model', { messages: chat.messages }, 400, 'model', /'model' is required/],
  ];
  for (const [what, body, status, param, message] of cases) {
    test(`chat: ${what} -> ${status} naming ${param}`, async () => {
      const r = await post('/v1/chat/completions', JSON.stringify(body));
      assert.equal(r.status, status, JSON.stringify(r.json));
      assert.equal(r.json.error.param, param);
      assert.equal(r.json.error.type, status === 404 ? 'not_found_error' : 'invalid_request_error');
      assert.match(r.json.error.message, message);
    });
  }

  test('completion prompts: too long for the context, token ids outside the vocabulary, wrong shapes', async () => {
    const c = server.client();
    const long = await failure(c.completions.create({ model: 'tiny', prompt: 'x'.repeat(200), max_tokens: 1 }));
    assert.equal(long.status, 400);
    assert.equal(long.param, 'prompt');
    assert.match(long.message, /maximum context length is 160 tokens, but the prompt has 200 tokens/);
    const vocab = await failure(c.completions.create({ model: 'tiny', prompt: [[1, 2], [3, 9999]], max_tokens: 1 }));
    assert.equal(vocab.param, 'prompt[1]');
    assert.match(vocab.message, /'prompt\[1\]\[1\]' must be a token id in \[0, 259\), got 9999/);
    const mixed = await failure(c.completions.create({ model: 'tiny', prompt: ['a', 1] as never, max_tokens: 1 }));
    assert.equal(mixed.param, 'prompt');
    const empty = await failure(c.completions.create({ model: 'tiny', prompt: '', max_tokens: 1 }));
    assert.match(empty.message, /'prompt' is empty after tokenization/);
    const echo = await failure(c.completions.create({ model: 'tiny', prompt: 'a', max_tokens: 1, echo: true }));
    assert.deepEqual([echo.status, echo.param, echo.message], [400, 'echo', "400 'echo' is not supported"]);
  });

  test('malformed JSON, a non-object body, an oversized body and an unknown route get error JSON', async () => {
    const bad = await post('/v1/completions', '{"model": "tiny", "prompt": ');
    assert.equal(bad.status, 400);
    assert.match(bad.json.error.message, /request body is not valid JSON/);
    const list = await post('/v1/completions', '[1, 2]');
    assert.match(list.json.error.message, /request body must be a JSON object, got array/);
    const big = await post('/v1/completions', JSON.stringify({ model: 'tiny', prompt: 'x'.repeat(5000) }));
    assert.equal(big.status, 400);
    assert.equal(big.json.error.code, 'body_too_large');
    assert.match(big.json.error.message, /exceeds the limit of 4096 bytes/);
    const route = await fetch(`${server.url}/v1/nothing`);
    assert.equal(route.status, 404);
    assert.match(((await route.json()) as { error: { message: string } }).error.message, /no route GET \/v1\/nothing/);
    assert.equal((await fetch(`${server.url}/v1/completions`)).status, 405);
  });

  test('after all of that the server still answers', async () => {
    const r = await server.client().chat.completions.create({ ...chat, messages: [{ role: 'user', content: 'Hi' }], temperature: 0, ignore_eos: true } as never) as { choices: unknown[]; usage: { completion_tokens: number } };
    assert.equal(r.choices.length, 1);
    assert.equal(r.usage.completion_tokens, 3);
  });
});

describe('kestrel serve: load and disconnects', () => {
  const long = { model: 'tiny', prompt: 'go', max_tokens: 150, n: 8, temperature: 0, ignore_eos: true, stream: true } as const;

  test('with a full batch and --max-queue 0 a request gets 429 with Retry-After; it succeeds later', async () => {
    const c = server.client();
    const first = await c.completions.create(long as never) as unknown as AsyncIterable<{ choices: { text: string }[] }>;
    const it = first[Symbol.asyncIterator]();
    await it.next(); // the first job is generating now
    const busy = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'tiny', prompt: 'hi', max_tokens: 2 }) });
    assert.equal(busy.status, 429);
    assert.equal(busy.headers.get('retry-after'), '1');
    assert.equal(((await busy.json()) as { error: { code: string } }).error.code, 'queue_full');
    // the running job's paged KV cache: each of its 8 rows holds at least one block of 16 tokens
    const during = await metric(server.url, 'kestrel_kv_blocks_used');
    assert.ok(during >= 8, `${during} KV blocks in use by 8 rows`);
    assert.ok(during <= (await metric(server.url, 'kestrel_kv_blocks_total')));
    let chunks = 1;
    for (let r = await it.next(); !r.done; r = await it.next()) chunks++;
    assert.ok(chunks > 1);
    const later = await c.completions.create({ model: 'tiny', prompt: 'hi', max_tokens: 2, temperature: 0 });
    assert.equal(later.choices.length, 1);
    assert.equal(await metric(server.url, 'kestrel_kv_blocks_used'), 0, 'the blocks were freed');
  });

  test('a client that disconnects mid-stream stops its generation', async () => {
    const before = await metric(server.url, 'kestrel_generated_tokens_total');
    const abort = new AbortController();
    const stream = await server.client().completions.create(long as never, { signal: abort.signal }) as unknown as AsyncIterable<unknown>;
    for await (const _ of stream) {
      abort.abort();
      break;
    }
    // bounded poll: the server notices the closed socket within a step or two
    let running = 1;
    for (let i = 0; i < 200 && running !== 0; i++) {
      running = ((await (await fetch(`${server.url}/health`)).json()) as { running: number }).running;
      if (running) await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(running, 0, 'the engine is idle again');
    const generated = (await metric(server.url, 'kestrel_generated_tokens_total')) - before;
    assert.ok(generated < 8 * 150, `the disconnect stopped generation early (${generated} of ${8 * 150} tokens)`);
  });
});

describe('kestrel serve: --api-key, /health, /metrics, --help', () => {
  let keyed: RunningServer;
  before(async () => {
    keyed = await startServer(['--model', fx.modelDir, '--api-key', 'sekret']);
  });
  after(async () => {
    await keyed?.stop();
  });

  test('a wrong or missing key gets 401; the right one works; /health needs none', async () => {
    const wrong = await failure(keyed.client('guess').models.list());
    assert.equal(wrong.status, 401);
    assert.equal(wrong.code, 'invalid_api_key');
    assert.equal((await fetch(`${keyed.url}/v1/models`)).status, 401);
    const models = await keyed.client('sekret').models.list();
    assert.deepEqual(models.data.map((m) => m.id), ['tiny']); // named after its folder
    assert.deepEqual(await (await fetch(`${keyed.url}/health`)).json(), { status: 'ok', queued: 0, running: 0, kvBlocksUsed: 0, kvBlocksTotal: 0 });
  });

  test('/metrics counts what was served', async () => {
    const c = keyed.client('sekret');
    const a = await c.completions.create({ model: 'tiny', prompt: 'one', max_tokens: 5, temperature: 0 });
    const b = await c.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'two' }], max_tokens: 7, n: 2, temperature: 0 });
    const res = await fetch(`${keyed.url}/metrics`);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const value = (line: string): number => Number(text.split('\n').find((l) => l.startsWith(line))?.split(' ').at(-1));
    assert.equal(value('kestrel_generated_tokens_total '), a.usage!.completion_tokens + b.usage!.completion_tokens);
    assert.equal(value('kestrel_prompt_tokens_total '), a.usage!.prompt_tokens + b.usage!.prompt_tokens);
    assert.equal(value('kestrel_queue_length '), 0);
    assert.equal(value('kestrel_running_requests '), 0);
    assert.ok(value('kestrel_generation_tokens_per_second ') > 0);
    assert.equal(value('kestrel_http_requests_total{endpoint="completion",status="200"}'), 1);
    assert.equal(value('kestrel_http_requests_total{endpoint="models",status="401"}'), 2);
    assert.match(text, /# TYPE kestrel_generated_tokens_total counter/);
  });

  test('--host beyond loopback without --api-key is refused before loading; a folder that does not load is named', () => {
    const r = runCli(['serve', '--model', fx.modelDir, '--host', '0.0.0.0']);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /--host 0\.0\.0\.0 serves other machines: give --api-key KEY/);
    const missing = runCli(['serve', '--model', fx.root]);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, new RegExp(`--model ${fx.root}: `));
  });
});
