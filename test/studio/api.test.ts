// The Studio's HTTP contract against a real `kestrel studio` process: the model folders listed
// with what their files say, load / chat / unload, the template page's endpoints (source, preview
// with the error line, save with a backup), and the safety rules: folder names only (no '..' or a
// symlink out of --models), Host and Origin checks, --token on every API request, and --host
// beyond loopback refused without a token.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync, symlinkSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCli } from '../helpers.js';
import type { RunningServer } from '../serve/serve_fixture.js';
import { type StudioFixture, startStudio, writeStudioFixture } from './studio_fixture.js';

const fx: StudioFixture = writeStudioFixture();
let studio: RunningServer;
let guarded: RunningServer;
const TOKEN = 'test-token-1234';

before(async () => {
  symlinkSync(join(fx.root, 'tiny'), join(fx.modelsDir, 'escape')); // a model folder outside --models
  [studio, guarded] = await Promise.all([startStudio(fx.modelsDir, ['--max-body-bytes', '65536']), startStudio(fx.modelsDir, ['--token', TOKEN])]);
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
    // 'notes' has no config.json; 'escape' is listed (its config.json is reachable) but cannot be loaded
    assert.deepEqual(names, ['escape', 'tiny', 'tiny-copy', 'tiny-long']);
    const tiny = r.json.models.find((m: { name: string }) => m.name === 'tiny');
    const config = JSON.parse(readFileSync(join(fx.modelsDir, 'tiny', 'config.json'), 'utf8'));
    assert.deepEqual(tiny, {
      name: 'tiny', family: 'llama', sizeBytes: statSync(join(fx.modelsDir, 'tiny', 'model.safetensors')).size,
      dtype: config.torch_dtype ?? 'f32', contextLength: 160, templateSource: 'tokenizer_config.json', loaded: false, memoryBytes: null,
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
