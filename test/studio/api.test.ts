// The Studio's HTTP contract against a real `kestrel studio` process: the model folders listed
// with what their files say, load / chat / unload, the template page's endpoints (source, preview
// with the error line, save with a backup), and the safety rules: folder names only (no '..' or a
// symlink out of --models), Host and Origin checks, --token on every API request, and --host
// beyond loopback refused without a token.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync, symlinkSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BUILTIN_TEMPLATES } from '../../src/tokenizer/index.js';
import { runCli } from '../helpers.js';
import type { RunningServer } from '../serve/serve_fixture.js';
import { type StudioFixture, TEXT_ROWS, startStudio, writeStudioFixture } from './studio_fixture.js';

const fx: StudioFixture = writeStudioFixture();
let studio: RunningServer;
let guarded: RunningServer;
const TOKEN = 'test-token-1234';

before(async () => {
  symlinkSync(join(fx.root, 'tiny'), join(fx.modelsDir, 'escape')); // a model folder outside --models
  [studio, guarded] = await Promise.all([startStudio(fx.modelsDir, ['--max-body-bytes', '65536', '--max-upload-bytes', '8192']), startStudio(fx.modelsDir, ['--token', TOKEN], 'guarded-data')]);
});

after(async () => {
  await Promise.all([studio?.stop(), guarded?.stop()]);
  fx.remove();
});

interface Reply { status: number; json: any } // eslint-disable-line @typescript-eslint/no-explicit-any

/** One request with full control of the headers (fetch cannot set Host). */
function call(base: string, method: string, path: string, body?: string, headers: Record<string, string> = {}): Promise<Reply & { text: string; type: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { method, headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        let json: unknown = null;
        try {
          json = JSON.parse(text);
        } catch { /* the app's HTML */ }
        resolve({ status: res.statusCode!, json, text, type: String(res.headers['content-type']) });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const post = (path: string, body: unknown, headers: Record<string, string> = {}) => call(studio.url, 'POST', path, typeof body === 'string' ? body : JSON.stringify(body), headers);
const get = (path: string, headers: Record<string, string> = {}) => call(studio.url, 'GET', path, undefined, headers);

/** The bytes of tensor data in a safetensors file: its size less the 8-byte length and the JSON header. */
function payloadBytes(file: string): number {
  const buf = readFileSync(file);
  return buf.length - 8 - Number(buf.readBigUInt64LE(0));
}

describe('kestrel studio: models', () => {
  test('the app is served at / and at its own routes', async () => {
    for (const path of ['/', '/chat', '/assets/../index.html']) {
      const r = await get(path);
      assert.equal(r.status, 200);
      assert.match(r.type, /text\/html/);
      assert.match(r.text, /<div id="app"><\/div>/);
    }
    const js = /src="\.\/(assets\/[^"]+\.js)"/.exec((await get('/')).text)![1];
    const bundle = await get(`/${js}`);
    assert.equal(bundle.status, 200);
    assert.match(bundle.type, /text\/javascript/);
  });

  test('no request path reaches a file outside the built app', async () => {
    for (const path of ['/../../package.json', '/%2e%2e/%2e%2e/package.json', '/..%2f..%2fpackage.json', '/assets/%2e%2e%2f%2e%2e%2f%2e%2e%2fpackage.json']) {
      const r = await get(path);
      assert.equal(r.status, 200, path);
      assert.match(r.text, /<div id="app"><\/div>/, `${path} answers the app's index.html, not the file`);
    }
  });

  test('GET /api/studio/models lists the HF folders with what their files say', async () => {
    const r = await get('/api/studio/models');
    assert.equal(r.status, 200, r.text);
    const names = r.json.models.map((m: { name: string }) => m.name);
    // 'notes' has no config.json; 'escape' is a symlink to a model outside --models
    assert.deepEqual(names, ['tiny', 'tiny-base', 'tiny-copy', 'tiny-long']);
    assert.equal(r.json.models.find((m: { name: string }) => m.name === 'tiny-base').templateSource, null);
    const tiny = r.json.models.find((m: { name: string }) => m.name === 'tiny');
    const config = JSON.parse(readFileSync(join(fx.modelsDir, 'tiny', 'config.json'), 'utf8'));
    assert.deepEqual(tiny, {
      name: 'tiny', family: 'llama', sizeBytes: statSync(join(fx.modelsDir, 'tiny', 'model.safetensors')).size,
      dtype: config.torch_dtype ?? 'f32', contextLength: 160, templateSource: 'tokenizer_config.json', loaded: false, memoryBytes: null,
      // no generation_config.json, a family without documented settings, a chat template: the instruct defaults
      suggested: [
        { name: 'temperature', value: 0.7, reason: 'an instruct model (it has a chat template): a moderate chat temperature' },
        { name: 'top_p', value: 0.95, reason: 'trims the unlikely tail without changing typical text' },
      ],
    });
  });

  const badNames: [what: string, body: unknown, status: number, message: RegExp][] = [
    ['a ../ path', { name: '../tiny' }, 400, /no '\.\.' or '\/'/],
    ['a path inside', { name: 'tiny/../tiny' }, 400, /must be the name of a folder under --models/],
    ['an absolute path', { name: '/etc' }, 400, /must be the name of a folder/],
    ['a number', { name: 5 }, 400, /got 5/],
    ['no folder of that name', { name: 'missing' }, 404, /no model folder 'missing' under --models/],
    ['a symlink out of --models', { name: 'escape' }, 403, /resolves outside --models/],
    ['a folder without config.json', { name: 'notes' }, 404, /needs a config.json/],
  ];
  for (const [what, body, status, message] of badNames) {
    test(`load: ${what} -> ${status}`, async () => {
      const r = await post('/api/studio/models/load', body);
      assert.equal(r.status, status, r.text);
      assert.match(r.json.error.message, message);
    });
  }

  test('bad bodies -> 400 with the reason', async () => {
    assert.match((await post('/api/studio/models/load', '{nope')).json.error.message, /request body is not valid JSON/);
    assert.match((await post('/api/studio/models/load', [1])).json.error.message, /must be a JSON object, got array/);
    const big = await post('/api/studio/template/preview', { name: 'tiny', template: 'x'.repeat(70_000), messages: [] });
    assert.equal(big.status, 400);
    assert.match(big.json.error.message, /exceeds the limit of 65536 bytes/);
    const wrongMethod = await get('/api/studio/models/load');
    assert.equal(wrongMethod.status, 405);
  });

  test('a quantized copy loads beside the float model (NAME@QUANT), answers chat, and unloads', async () => {
    const bad = await post('/api/studio/models/load', { name: 'tiny-copy', quant: 'q3' });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error.message, /'quant' must be one of bf16, int8, q4, got "q3"/);
    const loaded = await post('/api/studio/models/load', { name: 'tiny-copy', quant: 'int8' });
    assert.equal(loaded.status, 200, loaded.text);
    assert.equal(loaded.json.name, 'tiny-copy@int8');
    // int8 weights (one byte each plus a scale per row) take well under the float32 checkpoint's bytes
    assert.ok(loaded.json.memoryBytes > 0 && loaded.json.memoryBytes < 0.5 * payloadBytes(join(fx.modelsDir, 'tiny-copy', 'model.safetensors')), String(loaded.json.memoryBytes));
    const listing = (await get('/api/studio/models')).json;
    assert.deepEqual(listing.derived, [{ name: 'tiny-copy@int8', base: 'tiny-copy', memoryBytes: loaded.json.memoryBytes }]);
    assert.equal(listing.models.find((m: { name: string }) => m.name === 'tiny-copy').loaded, false, 'the float folder itself is not loaded');
    const r = await post('/v1/chat/completions', { model: 'tiny-copy@int8', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3, temperature: 0 });
    assert.equal(r.status, 200, r.text);
    assert.ok(r.json.usage.completion_tokens >= 1);
    assert.equal((await post('/api/studio/models/unload', { name: 'tiny-copy@int8' })).status, 200);
    assert.deepEqual((await get('/api/studio/models')).json.derived, []);
  });

  test('load, chat over /v1/chat/completions, unload', async () => {
    const loaded = await post('/api/studio/models/load', { name: 'tiny' });
    assert.equal(loaded.status, 200, loaded.text);
    // the live storage the load added is the checkpoint's tensors (float32 as saved), no more
    assert.equal(loaded.json.memoryBytes, payloadBytes(join(fx.modelsDir, 'tiny', 'model.safetensors')));
    const listed = (await get('/api/studio/models')).json.models.find((m: { name: string }) => m.name === 'tiny');
    assert.equal(listed.loaded, true);
    const chunks: string[] = [];
    const stream = await studio.client().chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let usage = null;
    for await (const c of stream) {
      if (c.choices[0]?.delta.content) chunks.push(c.choices[0].delta.content);
      if (c.usage) usage = c.usage;
    }
    assert.ok(usage, 'the stream ends with usage');
    // ChatML of one user turn plus the generation prompt, one token per byte and per special token
    const prompt = '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n';
    assert.equal(usage.prompt_tokens, Buffer.byteLength(prompt) - 2 * ('<|im_start|>'.length - 1) - ('<|im_end|>'.length - 1));
    assert.ok(usage.completion_tokens >= 1 && usage.completion_tokens <= 5);
    const unloaded = await post('/api/studio/models/unload', { name: 'tiny' });
    assert.deepEqual([unloaded.status, unloaded.json], [200, { name: 'tiny', loaded: false }]);
    const again = await post('/api/studio/models/unload', { name: 'tiny' });
    assert.equal(again.status, 404);
    assert.match(again.json.error.message, /no loaded model named "tiny"/);
    const gone = await post('/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'Hi' }] });
    assert.equal(gone.status, 404);
  });
});

test('unload while a generation runs -> 409, and the generation is unharmed', async () => {
  assert.equal((await post('/api/studio/models/load', { name: 'tiny-long' })).status, 200);
  const gone = new AbortController();
  // tiny-long has no eos: 2000 tokens keep the engine busy for seconds
  const r = await fetch(`${studio.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, signal: gone.signal,
    body: JSON.stringify({ model: 'tiny-long', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2000, stream: true }),
  });
  const reader = r.body!.getReader();
  await reader.read(); // the first chunk: the job runs
  const busy = await post('/api/studio/models/unload', { name: 'tiny-long' });
  assert.equal(busy.status, 409);
  assert.match(busy.json.error.message, /'tiny-long' cannot be unloaded while 1 generation\(s\) run or wait; stop them first/);
  const more = await reader.read();
  assert.equal(more.done, false, 'the stream goes on');
  gone.abort();
  for (let t0 = Date.now(); (await post('/api/studio/models/unload', { name: 'tiny-long' })).status === 409; await new Promise((res) => setTimeout(res, 50)))
    assert.ok(Date.now() - t0 < 5000, 'the aborted generation ends and the model unloads');
});

test('POST /api/studio/tokens counts with the loaded model tokenizer', async () => {
  const missing = await post('/api/studio/tokens', { model: 'tiny-copy', text: 'a' });
  assert.equal(missing.status, 404);
  assert.match(missing.json.error.message, /no loaded model named 'tiny-copy'/);
  assert.equal((await post('/api/studio/models/load', { name: 'tiny-copy' })).status, 200);
  // the byte tokenizer: one token per UTF-8 byte, one per special token
  assert.deepEqual((await post('/api/studio/tokens', { model: 'tiny-copy', text: 'héllo<|im_end|>' })).json, { tokens: 7 });
  const noText = await post('/api/studio/tokens', { model: 'tiny-copy' });
  assert.equal(noText.status, 400);
  assert.match(noText.json.error.message, /'text' is required/);
  assert.equal((await post('/api/studio/models/unload', { name: 'tiny-copy' })).status, 200);
});

describe('kestrel studio: chat templates', () => {
  const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi' }];
  const draft = '{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}\n{% endfor %}';

  test('GET /api/studio/template names the source and returns the template', async () => {
    const r = await get('/api/studio/template?name=tiny-copy');
    assert.equal(r.status, 200, r.text);
    const file = JSON.parse(readFileSync(join(fx.modelsDir, 'tiny-copy', 'tokenizer_config.json'), 'utf8'));
    assert.equal(r.json.source, 'tokenizer_config.json');
    assert.equal(r.json.template, file.chat_template);
    assert.deepEqual([...r.json.specialTokens].sort(), ['<|endoftext|>', '<|im_end|>'].sort());
    // a folder without a template: the built-in its vocabulary's turn markers identify, as chats use
    const base = await get('/api/studio/template?name=tiny-base');
    assert.equal(base.json.source, 'built-in chatml');
    assert.equal(base.json.template, BUILTIN_TEMPLATES.chatml);
    const bad = await get('/api/studio/template?name=..%2Ftiny');
    assert.equal(bad.status, 400);
  });

  test('preview renders the draft for the messages, with the token count', async () => {
    const r = await post('/api/studio/template/preview', { name: 'tiny', template: draft, messages });
    assert.equal(r.status, 200, r.text);
    const prompt = '[system] Be brief.<|im_end|>\n[user] Hi<|im_end|>\n';
    assert.equal(r.json.prompt, prompt);
    // byte tokenizer: one token per byte, one per special token
    assert.equal(r.json.tokens, Buffer.byteLength(prompt) - 2 * ('<|im_end|>'.length - 1));
  });

  test('preview of a broken draft gives the error and its line', async () => {
    const cases: [template: string, line: number][] = [
      ['{% for m in messages %}\n{{ m.role }}\n{{ m.content }\n{% endfor %}', 3], // an unclosed expression
      ['a\nb\n{% if messages %}\nc', 3], // an unclosed block points at its opening line
      ['{{ bos_token }}\n{{ raise_exception("no system role") }}', 2],
    ];
    for (const [template, line] of cases) {
      const r = await post('/api/studio/template/preview', { name: 'tiny', template, messages });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.error.line, line, `${JSON.stringify(template)}: ${r.json.error.message}`);
    }
    const raised = await post('/api/studio/template/preview', { name: 'tiny', template: '{{ raise_exception("no system role") }}', messages });
    assert.equal(raised.json.error.message, 'no system role');
  });

  test('save refuses a broken draft, and writes a good one after a backup', async () => {
    const dir = join(fx.modelsDir, 'tiny-copy');
    const before = readFileSync(join(dir, 'tokenizer_config.json'), 'utf8');
    const broken = await post('/api/studio/template/save', { name: 'tiny-copy', template: 'ok\n{% for %}', messages });
    assert.equal(broken.status, 400);
    assert.match(broken.json.error.message, /does not render \(line 2\)/);
    assert.equal(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'), before, 'a refused save leaves the file');
    const saved = await post('/api/studio/template/save', { name: 'tiny-copy', template: draft, messages });
    assert.equal(saved.status, 200, saved.text);
    assert.equal(saved.json.file, 'tokenizer_config.json');
    assert.equal(readFileSync(join(dir, saved.json.backups[0]), 'utf8'), before, 'the backup holds the old file');
    const after = JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8'));
    assert.equal(after.chat_template, draft);
    assert.equal(after.eos_token, JSON.parse(before).eos_token, 'the other fields are kept');
    assert.equal((await get('/api/studio/template?name=tiny-copy')).json.template, draft);
    assert.ok(readdirSync(dir).some((f) => f.startsWith('tokenizer_config.json.bak-')));
  });

  test('save needs a template', async () => {
    const r = await post('/api/studio/template/save', { name: 'tiny', messages });
    assert.equal(r.status, 400);
    assert.match(r.json.error.message, /'template' is required/);
  });
});

describe('kestrel studio: training jobs', () => {
  const upload = (body: string) => post('/api/studio/datasets', body, { 'content-type': 'application/x-ndjson' });
  /** Polls a job until it leaves 'running' (or 60 s pass). */
  async function settled(id: string): Promise<{ job: { status: string; error: string | null }; points: { step: number; loss: number }[] }> {
    for (let t0 = Date.now(); Date.now() - t0 < 60_000; await new Promise((r) => setTimeout(r, 200))) {
      const m = (await get(`/api/studio/jobs/metrics?id=${id}&from=0`)).json;
      if (m.job.status !== 'running') return m;
    }
    assert.fail(`job ${id} still running after 60 s`);
  }

  test('uploads: bad lines name the line, oversized ones get 413, good ones an id and a preview', async () => {
    const bad = await upload('{"text": "a"}\n{oops}\n');
    assert.equal(bad.status, 400);
    assert.match(bad.json.error.message, /^upload:2: not a JSON line/);
    const big = await upload('x'.repeat(9000));
    assert.equal(big.status, 413);
    assert.match(big.json.error.message, /exceeds the limit of 8192 bytes/);
    const ok = await upload(TEXT_ROWS);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.rows, 16);
    assert.deepEqual(ok.json.preview[0], JSON.parse(TEXT_ROWS.split('\n')[0]));
    // stored under the generated id in the Studio's data folder, nowhere the client chose
    assert.equal(readFileSync(join(fx.root, 'studio-data', 'uploads', `${ok.json.id}.jsonl`), 'utf8'), TEXT_ROWS);
  });

  test('start: bad bodies -> 400/404 naming the field', async () => {
    const dataset = (await upload(TEXT_ROWS)).json.id;
    const cases: [body: unknown, status: number, message: RegExp][] = [
      [{ model: '../tiny', dataset }, 400, /no '\.\.' or '\/'/],
      [{ model: 'tiny', dataset: '../../etc/passwd' }, 400, /'dataset' must be the id an upload returned/],
      [{ model: 'tiny', dataset: '00000000-0000-0000-0000-000000000000' }, 404, /no uploaded dataset/],
      [{ model: 'tiny', dataset, method: 'dora' }, 400, /'method' must be lora, qlora or full, got 'dora'/],
      [{ model: 'tiny', dataset, max_steps: 0 }, 400, /'max_steps' must be an integer >= 1/],
      [{ model: 'tiny', dataset, lr: 'fast' }, 400, /'lr' must be a number/],
    ];
    for (const [body, status, message] of cases) {
      const r = await post('/api/studio/jobs', body);
      assert.equal(r.status, status, `${JSON.stringify(body)}: ${r.text}`);
      assert.match(r.json.error.message, message);
    }
    assert.equal((await get('/api/studio/jobs/metrics?id=nope')).status, 404);
    assert.match((await get('/api/studio/jobs/metrics?id=x&from=-1')).json.error.message, /'from' must be an integer >= 0/);
  });

  test('a LoRA job runs `kestrel finetune` to the end; its metrics.jsonl comes back step by step', async () => {
    const dataset = (await upload(TEXT_ROWS)).json.id;
    const started = await post('/api/studio/jobs', { model: 'tiny', dataset, method: 'lora', max_steps: 3, seq_len: 32, lora_r: 4 });
    assert.equal(started.status, 200, started.text);
    assert.equal(started.json.status, 'running');
    const done = await settled(started.json.id);
    assert.equal(done.job.status, 'finished', String(done.job.error));
    assert.deepEqual(done.points.map((p) => p.step), [1, 2, 3]);
    for (const p of done.points) assert.ok(Number.isFinite(p.loss) && p.loss > 0, `loss ${p.loss}`);
    // the same lines as the file the trainer wrote
    const file = readFileSync(join(fx.root, 'studio-data', 'jobs', started.json.id, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(done.points, file);
    const rest = (await get(`/api/studio/jobs/metrics?id=${started.json.id}&from=2`)).json;
    assert.deepEqual([rest.points.length, rest.next], [1, 3]);
    assert.ok(existsSync(join(fx.root, 'studio-data', 'jobs', started.json.id, 'adapter_config.json')), 'the adapter was saved');
  });

  test('stop ends a running job (SIGINT to the trainer) and it reports stopped', async () => {
    const dataset = (await upload(TEXT_ROWS)).json.id;
    const started = await post('/api/studio/jobs', { model: 'tiny', dataset, max_steps: 100000, seq_len: 32, lora_r: 4 });
    const id = started.json.id;
    for (let t0 = Date.now(); !(await get(`/api/studio/jobs/metrics?id=${id}`)).json.points.length; await new Promise((r) => setTimeout(r, 100)))
      assert.ok(Date.now() - t0 < 60_000, 'the job logs a step within 60 s');
    const stopped = await post('/api/studio/jobs/stop', { id });
    assert.equal(stopped.status, 200);
    const end = await settled(id);
    assert.equal(end.job.status, 'stopped');
    assert.ok(end.points.length < 100000);
    const listed = (await get('/api/studio/jobs')).json.jobs.find((j: { id: string }) => j.id === id);
    assert.equal(listed.status, 'stopped');
  });
});

describe('kestrel studio: a job from start to its results', () => {
  const upload = (body: string) => post('/api/studio/datasets', body, { 'content-type': 'application/x-ndjson' });
  async function settled(id: string, runs: number) {
    for (let t0 = Date.now(); Date.now() - t0 < 90_000; await new Promise((r) => setTimeout(r, 200))) {
      const m = (await get(`/api/studio/jobs/metrics?id=${id}&from=0`)).json;
      if (m.job.status !== 'running' && m.job.runs === runs) return m;
    }
    assert.fail(`job ${id} still running after 90 s`);
  }
  /** Greedy logprobs of a short reply: the fingerprint of the weights a served model runs. */
  async function logprobs(model: string): Promise<number[]> {
    const r = await post('/v1/chat/completions', { model, messages: [{ role: 'user', content: 'row 3' }], max_tokens: 4, temperature: 0, logprobs: true });
    assert.equal(r.status, 200, r.text);
    return r.json.choices[0].logprobs.content.map((t: { logprob: number }) => t.logprob);
  }

  test('dataset preview: the rows as the model reads them, trained spans marked', async () => {
    const text = (await upload(TEXT_ROWS)).json.id;
    const r = await post('/api/studio/datasets/preview', { model: 'tiny', dataset: text });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.format, 'text');
    // text data trains on every token: the row's text and the eos the encoder appends
    assert.deepEqual(r.json.rows[0].spans, [{ text: `${JSON.parse(TEXT_ROWS.split('\n')[0]).text}<|im_end|>`, trained: true }]);
    const chat = (await upload(JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello!' }] }) + '\n')).json.id;
    const c = (await post('/api/studio/datasets/preview', { model: 'tiny', dataset: chat })).json;
    assert.equal(c.format, 'chat');
    // the template's ChatML: the prompt is read, the assistant's reply (and its end token) trained on
    const spans = c.rows[0].spans as { text: string; trained: boolean }[];
    assert.equal(spans.map((x) => x.text).join(''), '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n');
    assert.deepEqual(spans.filter((x) => x.trained).map((x) => x.text).join(''), 'Hello!<|im_end|>');
    const bad = await post('/api/studio/datasets/preview', { model: 'tiny', dataset: (await upload('{"q": 1}\n')).json.id });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error.message, /upload:1: cannot tell the data format from the fields "q"/);
  });

  test('eval curve, checkpoints, stop, resume to the end; then chat, merge, and the arena pair', async () => {
    const dataset = (await upload(TEXT_ROWS)).json.id;
    const started = await post('/api/studio/jobs', { model: 'tiny', dataset, method: 'lora', max_steps: 400, seq_len: 32, lora_r: 4, lr: 5e-3, save_every: 2, eval_fraction: 0.25, eval_every: 2 });
    assert.equal(started.status, 200, started.text);
    const id = started.json.id;
    for (let t0 = Date.now(); (await get(`/api/studio/jobs/metrics?id=${id}`)).json.points.length < 3; await new Promise((r) => setTimeout(r, 100)))
      assert.ok(Date.now() - t0 < 60_000, 'the job logs 3 steps within 60 s');
    assert.equal((await post('/api/studio/jobs/resume', { id })).status, 409, 'a running job cannot be resumed');
    assert.equal((await post('/api/studio/jobs/use', { id })).status, 409, 'a running job has no result yet');
    await post('/api/studio/jobs/stop', { id });
    const stopped = await settled(id, 1);
    assert.equal(stopped.job.status, 'stopped');
    const at = stopped.points.at(-1).step;
    // the stop saved a checkpoint at the last step; --save-every 2 saved the even ones before it (the newest two kept)
    assert.equal(stopped.job.checkpoints.at(-1), at);
    assert.ok(stopped.evals.length >= 1 && stopped.evals.every((e: { step: number; eval_loss: number }) => e.step % 2 === 0 && e.eval_loss > 0), JSON.stringify(stopped.evals));
    const noResult = await post('/api/studio/jobs/use', { id });
    assert.equal(noResult.status, 409);
    assert.match(noResult.json.error.message, /ended stopped before saving its adapter; resume it/);

    // resume continues from the checkpoint (toward 400 steps: the test stops it again a little later)
    const resumed = await post('/api/studio/jobs/resume', { id });
    assert.equal(resumed.status, 200, resumed.text);
    assert.deepEqual([resumed.json.status, resumed.json.runs], ['running', 2]);
    for (let t0 = Date.now(); ((await get(`/api/studio/jobs/metrics?id=${id}`)).json.points.at(-1)?.step ?? 0) < at + 2; await new Promise((r) => setTimeout(r, 100)))
      assert.ok(Date.now() - t0 < 60_000, 'the resumed job logs steps past the checkpoint within 60 s');
    await post('/api/studio/jobs/stop', { id });
    const again = await settled(id, 2);
    // metrics.jsonl holds every step once: the resume went on from the checkpoint's step
    assert.deepEqual(again.points.map((p: { step: number }) => p.step), Array.from({ length: again.points.length }, (_, i) => i + 1));
    assert.ok(again.points.length > at);
  });

  test('a finished job: try in chat (adapter over its base), merge into a folder that runs the same, arena pair', async () => {
    const dataset = (await upload(TEXT_ROWS)).json.id;
    const started = await post('/api/studio/jobs', { model: 'tiny', dataset, method: 'lora', max_steps: 4, seq_len: 32, lora_r: 4, lr: 5e-3 });
    const id = started.json.id;
    const done = await settled(id, 1);
    assert.equal(done.job.status, 'finished', String(done.job.error));
    // a checkpoint every fifth of the run by default (every step of 4), the newest two kept
    assert.deepEqual(done.job.checkpoints, [3, 4]);
    const used = await post('/api/studio/jobs/use', { id });
    assert.equal(used.status, 200, used.text);
    const name = `tiny-ft-${id.slice(0, 8)}`;
    assert.deepEqual(used.json, { name, folder: null });
    const listing = (await get('/api/studio/models')).json;
    assert.deepEqual(listing.derived, [{ name, base: 'tiny', memoryBytes: null }]);
    assert.equal(listing.models.find((m: { name: string }) => m.name === 'tiny').loaded, true, 'its base was loaded for it');
    const tuned = await logprobs(name);
    const base = await logprobs('tiny');
    assert.ok(tuned.some((v, i) => Math.abs(v - base[i]) > 1e-4), `the adapter changes the model: ${tuned} vs ${base}`);
    const unloadAdapter = await post('/api/studio/models/unload', { name });
    assert.equal(unloadAdapter.status, 409);
    assert.match(unloadAdapter.json.error.message, /is an adapter served over 'tiny'/);

    const merged = await post('/api/studio/jobs/merge', { id });
    assert.equal(merged.status, 200, merged.text);
    assert.deepEqual(merged.json, { name, folder: name });
    assert.ok(existsSync(join(fx.modelsDir, name, 'config.json')));
    assert.ok(!readdirSync(fx.modelsDir).some((f) => f.includes('.tmp-')), 'no temporary folder is left');
    assert.equal((await post('/api/studio/jobs/merge', { id })).status, 409, 'a second merge does not overwrite the first');
    // the merged folder is a model of its own: load it under its folder name once the adapter of that name is gone
    assert.equal((await post('/api/studio/models/unload', { name: 'tiny' })).status, 200);
    assert.equal((await post('/api/studio/models/load', { name })).status, 200);
    const fromFolder = await logprobs(name);
    // W + BA merged in float32 runs what the adapter over W ran
    tuned.forEach((v, i) => assert.ok(Math.abs(v - fromFolder[i]) < 1e-4, `token ${i}: adapter ${v} vs merged ${fromFolder[i]}`));
    assert.equal((await post('/api/studio/models/unload', { name })).status, 200);

    // export: the base with the job's adapter as a q8_0 GGUF under --models, listed beside the folders
    const badType = await post('/api/studio/jobs/export', { id, type: 'q3' });
    assert.equal(badType.status, 400);
    assert.match(badType.json.error.message, /'type' must be one of f32, f16, q8_0, q4_0, q4_k_m, got "q3"/);
    const exported = await post('/api/studio/jobs/export', { id, type: 'q8_0' });
    assert.equal(exported.status, 200, exported.text);
    assert.deepEqual(exported.json, { name: `${name}-q8_0.gguf`, folder: `${name}-q8_0.gguf` });
    const listedGguf = (await get('/api/studio/models')).json.models.find((m: { name: string }) => m.name === `${name}-q8_0.gguf`);
    assert.ok(listedGguf, 'the export is listed');
    assert.match(listedGguf.dtype, /q8_0/);
    // and it loads and answers like any folder
    assert.equal((await post('/api/studio/models/load', { name: `${name}-q8_0.gguf` })).status, 200);
    const fromGguf = await post('/v1/chat/completions', { model: `${name}-q8_0.gguf`, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3, temperature: 0 });
    assert.equal(fromGguf.status, 200, fromGguf.text);
    assert.equal((await post('/api/studio/models/unload', { name: `${name}-q8_0.gguf` })).status, 200);
    // a job id that is none: 404 naming it, on every result route
    for (const route of ['resume', 'use', 'merge', 'export']) {
      const r = await post(`/api/studio/jobs/${route}`, { id: 'no-such-job' });
      assert.equal(r.status, 404, route);
      assert.match(r.json.error.message, /no training job "no-such-job"/);
    }
  });
});

describe('kestrel studio: safety', () => {
  test('a foreign Host (DNS rebinding) or a cross-site Origin -> 403', async () => {
    const host = await get('/api/studio/models', { host: 'evil.example:7860' });
    assert.equal(host.status, 403);
    assert.match(host.json.error.message, /Host 'evil.example:7860' is not this Studio's address/);
    const origin = await get('/api/studio/models', { origin: 'http://evil.example' });
    assert.equal(origin.status, 403);
    assert.match(origin.json.error.message, /cross-origin request from 'http:\/\/evil.example' refused/);
    const chat = await post('/v1/chat/completions', { model: 'tiny' }, { origin: 'http://evil.example' });
    assert.equal(chat.status, 403, 'the OpenAI routes are guarded too');
    const same = await get('/api/studio/models', { origin: studio.url });
    assert.equal(same.status, 200, 'the page the Studio served may call it');
  });

  test('with --token every API request needs it (401 naming the header)', async () => {
    for (const path of ['/api/studio/models', '/v1/models']) {
      const none = await call(guarded.url, 'GET', path);
      assert.equal(none.status, 401, path);
      assert.match(none.json.error.message, /Authorization: Bearer/);
      const wrong = await call(guarded.url, 'GET', path, undefined, { authorization: 'Bearer nope' });
      assert.equal(wrong.status, 401);
      const right = await call(guarded.url, 'GET', path, undefined, { authorization: `Bearer ${TOKEN}` });
      assert.equal(right.status, 200, path);
    }
  });

  test('--host beyond loopback without --token is refused; a short token too', () => {
    const open = runCli(['studio', '--models', fx.modelsDir, '--host', '0.0.0.0', '--port', '0']);
    assert.equal(open.status, 1);
    assert.match(open.stderr, /--host 0\.0\.0\.0 opens the Studio to other machines: give --token TOKEN/);
    const short = runCli(['studio', '--models', fx.modelsDir, '--host', '0.0.0.0', '--token', 'abc']);
    assert.match(short.stderr, /--token must be at least 8 characters, got 3/);
    const missing = runCli(['studio', '--models', join(fx.root, 'nope')]);
    assert.match(missing.stderr, /--models .*nope: not a folder/);
  });
});
