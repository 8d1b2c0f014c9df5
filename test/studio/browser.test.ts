// The Studio in a real browser: playwright-core drives Debian's /usr/bin/chromium (headless)
// against a `kestrel studio` on two tiny models. It loads both, chats (the reply kept in the
// conversation equals the server's greedy reply to the same request), edits a template and sees
// the preview follow, breaks it and sees the line, attaches files to a chat message, runs the arena with both models until both
// show their timings (streamed at once: their timings overlap), and uploads a dataset, starts a LoRA fine-tune, watches the loss chart get
// points and stops it. Screenshots of each page go to test-output/studio/ for a human to look at.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { type Browser, type Page, chromium } from 'playwright-core';
import type { RunningServer } from '../serve/serve_fixture.js';
import { pdfWithPages } from './pdf_fixture.js';
import { LONG_CONTEXT, type StudioFixture, TEXT_ROWS, startStudio, writeStudioFixture } from './studio_fixture.js';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = 'test-output/studio';
const fx: StudioFixture = writeStudioFixture();
let studio: RunningServer;
let browser: Browser;
let page: Page;

before(async () => {
  // CI installs chromium (.ci/run); without it this file cannot test anything
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium`);
  mkdirSync(SHOTS, { recursive: true });
  studio = await startStudio(fx.modelsDir);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  page.setDefaultTimeout(20_000);
});

after(async () => {
  await browser?.close();
  await studio?.stop();
  fx.remove();
});

test('models page: the tiny models load', async () => {
  await page.goto(`${studio.url}/#models`);
  for (const name of ['tiny', 'tiny-copy', 'tiny-long']) {
    const row = page.locator(`tr[data-model="${name}"]`);
    await row.getByRole('button', { name: 'Load' }).click();
    await row.getByRole('button', { name: 'Unload' }).waitFor();
    assert.match(await row.textContent() ?? '', new RegExp(`llama.*${name === 'tiny-long' ? LONG_CONTEXT : 160}.*tokenizer_config\\.json.*KiB`));
  }
  await page.screenshot({ path: `${SHOTS}/models.png`, fullPage: true });
});

/** The conversations the chat page keeps in localStorage. */
const storedChats = (): Promise<{ messages: { role: string; content: string }[] }[]> => stored('kestrel-studio-conversations');

/** A localStorage entry of the page, parsed (the expression runs in the browser, hence a string). */
const stored = <T>(key: string): Promise<T> => page.evaluate(`JSON.parse(localStorage.getItem(${JSON.stringify(key)}) ?? '[]')`) as Promise<T>;

test('chat page: a streamed reply equal to the server greedy reply, with token counts', async () => {
  await page.goto(`${studio.url}/#chat`);
  await page.getByRole('button', { name: 'New chat' }).click();
  await page.locator('input[name="temperature"]').fill('0');
  await page.locator('input[name="temperature"]').dispatchEvent('change');
  await page.locator('input[name="max_tokens"]').fill('12');
  await page.locator('input[name="max_tokens"]').dispatchEvent('change');
  await page.locator('textarea[name="system"]').fill('Be brief.');
  await page.locator('textarea[name="prompt"]').fill('Hello');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.locator('.usage').waitFor();
  const usageText = await page.locator('.usage').textContent();
  // what the conversation keeps in localStorage is the reply as streamed
  const reply = (await storedChats())[0].messages.at(-1)!;
  const expected = await studio.client().chat.completions.create({
    model: 'tiny', temperature: 0, top_p: 0.95, max_tokens: 12,
    messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello' }],
  });
  assert.equal(reply.role, 'assistant');
  assert.equal(reply.content, expected.choices[0].message.content);
  const u = expected.usage!;
  assert.equal(usageText, `prompt ${u.prompt_tokens} + reply ${u.completion_tokens} = ${u.total_tokens} tokens of 160 (${Math.round((100 * u.total_tokens) / 160)}% of the context)`);
  await page.screenshot({ path: `${SHOTS}/chat.png`, fullPage: true });
});

test('chat page: regenerate, edit, stop, export', async () => {
  // regenerate at temperature 0 replaces the reply with the same greedy one
  const before = (await storedChats())[0].messages;
  await page.getByRole('button', { name: 'Regenerate' }).click();
  await page.getByRole('button', { name: 'Send' }).waitFor();
  assert.deepEqual((await storedChats())[0].messages, before);
  // export downloads exactly what is stored
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export JSON' }).click()]);
  const exported = JSON.parse(readFileSync(await download.path(), 'utf8'));
  assert.deepEqual(exported, await storedChats());
  // edit puts the user message back in the composer and drops it and the reply
  await page.locator('.msg.user').getByRole('button', { name: 'Edit' }).click();
  assert.equal(await page.locator('textarea[name="prompt"]').inputValue(), 'Hello');
  // localStorage is written by an effect after the render
  await page.waitForFunction(`JSON.parse(localStorage.getItem('kestrel-studio-conversations') ?? '[]')[0]?.messages.length === 0`, undefined, { timeout: 5000 });
  assert.deepEqual((await storedChats())[0].messages, []);
  // stop: a reply of 3000 tokens (seconds of decoding) stopped once its first text shows; the
  // server must be idle right after, which it could not be had the generation gone on
  await page.locator('select[name="model"]').selectOption('tiny-long');
  await page.locator('input[name="max_tokens"]').fill('3000');
  await page.locator('input[name="max_tokens"]').dispatchEvent('change');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.waitForFunction(`(document.querySelector('.msg.assistant')?.textContent ?? '').length > 0`);
  // Stop is only there while the reply streams, so the click proves it was still streaming
  await page.getByRole('button', { name: 'Stop' }).click();
  await page.getByRole('button', { name: 'Send' }).waitFor({ timeout: 1500 });
  const cut = (await storedChats())[0].messages.at(-1)!;
  assert.equal(cut.role, 'assistant');
  assert.ok(cut.content.length > 0 && Buffer.byteLength(cut.content) < 3000, `stopped reply of ${cut.content.length} chars`);
  // 3000 tokens take the tiny model seconds; a stopped job leaves the engine within a few steps
  const t0 = Date.now();
  let health = { running: 1, queued: 1 };
  while (health.running + health.queued > 0 && Date.now() - t0 < 1500) {
    health = (await (await fetch(`${studio.url}/health`)).json()) as typeof health;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.deepEqual(health, { ...health, running: 0, queued: 0 }, `the stopped generation still runs ${Date.now() - t0} ms after Stop`);
});

test('chat page: suggested settings apply; files as context: chips with token counts, sent with their names, too much refused', async () => {
  await page.getByRole('button', { name: 'New chat' }).click();
  await page.locator('select[name="model"]').selectOption('tiny');
  // the suggested settings apply with one click (tiny: an instruct model without generation_config.json)
  await page.locator('input[name="temperature"]').fill('0');
  await page.locator('input[name="temperature"]').dispatchEvent('change');
  await page.locator('.suggested').getByRole('button', { name: 'Apply' }).click();
  assert.equal(await page.locator('input[name="temperature"]').inputValue(), '0.7');
  await page.locator('input[name="max_tokens"]').fill('20');
  await page.locator('input[name="max_tokens"]').dispatchEvent('change');
  const files = page.locator('input[name="files"]');
  await files.setInputFiles([{ name: 'notes.md', mimeType: 'text/markdown', buffer: Buffer.from('# Notes\nred') }, { name: 'cat.png', mimeType: 'image/png', buffer: Buffer.from([137, 80, 78, 71]) }]);
  const block = '<file name="notes.md">\n# Notes\nred\n</file>\n';
  // byte tokenizer: the chip's count is the block's UTF-8 length
  await page.locator('.chip', { hasText: `notes.md · ${Buffer.byteLength(block)} tokens` }).waitFor();
  await page.locator('.error', { hasText: 'cat.png: images need a model that takes them' }).waitFor();
  await page.locator('textarea[name="prompt"]').fill('Summarize.');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.locator('.usage').waitFor();
  const sent = (await storedChats())[0].messages[0];
  assert.deepEqual(sent, { role: 'user', content: `${block}Summarize.` });
  assert.equal(await page.locator('.chip').count(), 0, 'the chips went with the message');
  // a file that does not fit the context is not truncated: the page says so and will not send
  await files.setInputFiles({ name: 'big.txt', mimeType: 'text/plain', buffer: Buffer.from('x'.repeat(200)) });
  const bigTokens = Buffer.byteLength(`<file name="big.txt">\n${'x'.repeat(200)}\n</file>\n`);
  await page.locator('.overflow', { hasText: new RegExp(`The files do not fit: they take ${bigTokens} tokens, the conversation \\d+ and the reply up to 20, over the context of 160`) }).waitFor();
  assert.equal(await page.getByRole('button', { name: 'Send' }).isDisabled(), true);
  await page.screenshot({ path: `${SHOTS}/chat-files.png`, fullPage: true });
  await page.getByRole('button', { name: 'remove big.txt' }).click();
  assert.equal(await page.locator('.overflow').count(), 0);
  assert.equal(await page.getByRole('button', { name: 'Send' }).isDisabled(), false);
  // a PDF goes in as the text of its pages (pdf.js in the browser); one with no text is refused
  await page.getByRole('button', { name: 'New chat' }).click();
  await page.locator('select[name="model"]').selectOption('tiny');
  await page.locator('input[name="max_tokens"]').fill('20');
  await page.locator('input[name="max_tokens"]').dispatchEvent('change');
  await files.setInputFiles([
    { name: 'memo.pdf', mimeType: 'application/pdf', buffer: pdfWithPages(['Page one says red', 'Page two says blue']) },
    { name: 'scan.pdf', mimeType: 'application/pdf', buffer: pdfWithPages(['']) },
  ]);
  const pdfBlock = '<file name="memo.pdf">\nPage one says red\n\nPage two says blue\n</file>\n';
  await page.locator('.chip', { hasText: `memo.pdf · ${Buffer.byteLength(pdfBlock)} tokens` }).waitFor();
  await page.locator('.error', { hasText: 'scan.pdf: this PDF has no text layer' }).waitFor();
  await page.locator('textarea[name="prompt"]').fill('Colors?');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.locator('.usage').last().waitFor();
  assert.deepEqual((await storedChats())[0].messages[0], { role: 'user', content: `${pdfBlock}Colors?` });
});

test('template page: the preview follows the editor, and an error names its line', async () => {
  await page.goto(`${studio.url}/#template`);
  await page.locator('select[name="folder"]').selectOption('tiny');
  await page.locator('.source', { hasText: 'tokenizer_config.json' }).waitFor();
  await page.locator('pre.rendered', { hasText: '<|im_start|>user\nWhat is 2 + 2?<|im_end|>' }).waitFor();
  await page.locator('textarea[name="template"]').fill('{% for m in messages %}{{ m.role | upper }}: {{ m.content }}{{ eos_token }}\n{% endfor %}');
  const expected = 'SYSTEM: You are a helpful assistant.<|im_end|>\nUSER: What is 2 + 2?<|im_end|>\nASSISTANT: 4.<|im_end|>\nUSER: And 3 + 3?<|im_end|>\n';
  await page.waitForFunction(`document.querySelector('pre.rendered')?.textContent === ${JSON.stringify(expected)}`);
  assert.equal(await page.locator('pre.rendered mark').count(), 4, 'each <|im_end|> is marked as a special token');
  await page.screenshot({ path: `${SHOTS}/template.png`, fullPage: true });
  await page.locator('textarea[name="template"]').fill('{% for m in messages %}\n{{ m.content }\n{% endfor %}');
  await page.locator('.preview .error', { hasText: /^line 2: / }).waitFor();
  await page.screenshot({ path: `${SHOTS}/template-error.png`, fullPage: true });
});

test('arena: two models stream side by side and both show their timings; a vote is saved', async () => {
  await page.goto(`${studio.url}/#arena`);
  await page.locator('textarea[name="arena-prompt"]').fill('Name a colour.');
  await page.getByRole('button', { name: 'Run 2 models' }).click();
  for (const name of ['tiny', 'tiny-copy']) {
    const timing = page.locator(`.run[data-model="${name}"] .timing`);
    await timing.filter({ hasText: /^TTFT \d+ ms · [\d.]+ tok\/s · total \d+ ms$/ }).waitFor();
  }
  await page.screenshot({ path: `${SHOTS}/arena.png`, fullPage: true });
  await page.getByRole('button', { name: 'tiny-copy is better' }).click();
  await page.locator('table.rounds td', { hasText: 'tiny-copy' }).first().waitFor();
  const rounds = await stored<{ winner: string; runs: { model: string; ttftMs: number; totalMs: number; tokens: number }[] }[]>('kestrel-studio-arena');
  assert.equal(rounds.length, 1);
  assert.equal(rounds[0].winner, 'tiny-copy');
  assert.deepEqual(rounds[0].runs.map((r) => r.model), ['tiny', 'tiny-copy']);
  for (const r of rounds[0].runs) assert.ok(r.ttftMs > 0 && r.totalMs >= r.ttftMs && r.tokens >= 1, JSON.stringify(r));
  // streamed at once (continuous batching), not one after the other: each model's first token came before either finished
  const [a, b] = rounds[0].runs;
  assert.ok(Math.max(a.ttftMs, b.ttftMs) < Math.min(a.totalMs, b.totalMs), `the streams overlapped: ${JSON.stringify(rounds[0].runs)}`);
});

test('training page: upload a dataset, start a LoRA fine-tune, see the loss chart get points, stop it', async () => {
  await page.goto(`${studio.url}/#training`);
  await page.locator('select[name="train-model"]').selectOption('tiny');
  await page.locator('input[name="dataset"]').setInputFiles({ name: 'rows.jsonl', mimeType: 'application/x-ndjson', buffer: Buffer.from(TEXT_ROWS) });
  await page.locator('.dataset', { hasText: '16 rows; the first:' }).waitFor();
  for (const [name, value] of [['max_steps', '100000'], ['seq_len', '32'], ['lora_r', '4']]) {
    await page.locator(`input[name="${name}"]`).fill(value);
    await page.locator(`input[name="${name}"]`).dispatchEvent('change');
  }
  await page.getByRole('button', { name: 'Start' }).click();
  const job = page.locator('.job').first();
  // the loss chart holds the steps metrics.jsonl has logged so far
  await page.waitForFunction(`Number(document.querySelector('.job .chart')?.dataset.points ?? 0) >= 3`, undefined, { timeout: 60_000 });
  assert.match(await job.locator('.progress').textContent() ?? '', /^step \d+ \/ 100000 · loss \d+\.\d{4} · \d+ tok\/s · ETA \d+ (s|min)$/);
  assert.deepEqual(await job.locator('.u-title').allTextContents(), ['loss', 'learning rate', 'grad norm', 'tokens/s', 'peak memory (MiB)']);
  // memory by tag, loss beside eval loss
  assert.equal(await job.locator('.chart').nth(4).getAttribute('data-series'), 'total|param|grad|optimizer|activation');
  assert.equal(await job.locator('.chart').first().getAttribute('data-series'), 'train loss|eval loss');
  // the rows as the model reads them: text data is trained on whole, eos included
  assert.equal(await page.locator('.preview pre mark.trained').first().textContent(), `${JSON.parse(TEXT_ROWS.split('\n')[0]).text}<|im_end|>`);
  await page.screenshot({ path: `${SHOTS}/training.png`, fullPage: true });
  await job.getByRole('button', { name: 'Stop' }).click();
  await job.locator('.status', { hasText: 'stopped' }).waitFor({ timeout: 30_000 });
  const jobs = (await (await fetch(`${studio.url}/api/studio/jobs`)).json()) as { jobs: { status: string; maxSteps: number; checkpoints: number[] }[] };
  assert.deepEqual(jobs.jobs.map((j) => [j.status, j.maxSteps]), [['stopped', 100000]]);
  // the stop saved a checkpoint: the page lists it and resumes from it, the curve going on
  const saved = jobs.jobs[0].checkpoints.at(-1)!;
  await job.locator('.checkpoints', { hasText: `step ${saved}` }).waitFor();
  await job.getByRole('button', { name: 'Resume' }).click();
  await job.locator('.status', { hasText: 'running' }).waitFor();
  await page.waitForFunction(`Number(document.querySelector('.job .chart')?.dataset.points ?? 0) > ${saved}`, undefined, { timeout: 60_000 });
  await job.getByRole('button', { name: 'Stop' }).click();
  await job.locator('.status', { hasText: 'stopped' }).waitFor({ timeout: 30_000 });
});

test('training page: a finished fine-tune opens in chat and in the arena beside its base', async () => {
  await page.goto(`${studio.url}/#training`);
  await page.locator('select[name="train-model"]').selectOption('tiny-copy');
  await page.locator('input[name="dataset"]').setInputFiles({ name: 'rows.jsonl', mimeType: 'application/x-ndjson', buffer: Buffer.from(TEXT_ROWS) });
  await page.locator('.preview').waitFor();
  for (const [name, value] of [['max_steps', '2'], ['seq_len', '32'], ['lora_r', '4']]) {
    await page.locator(`input[name="${name}"]`).fill(value);
    await page.locator(`input[name="${name}"]`).dispatchEvent('change');
  }
  await page.getByRole('button', { name: 'Start' }).click();
  // the new job, not the stopped one of the test before (it is listed until the new one's card appears)
  const job = page.locator('.job', { hasText: 'tiny-copy · lora' }).first();
  await job.locator('.status', { hasText: /finished|failed|stopped/ }).waitFor({ timeout: 90_000 }).catch(async (e) => {
    await page.screenshot({ path: `${SHOTS}/training-finished-timeout.png`, fullPage: true });
    throw e;
  });
  assert.equal(await job.locator('.status').textContent(), 'finished', await job.locator('.error').allTextContents().then((e) => e.join('\n')));
  await page.screenshot({ path: `${SHOTS}/training-finished.png`, fullPage: true });
  await job.getByRole('button', { name: 'Try in chat' }).click();
  await page.waitForURL(/#chat$/);
  const jobs = (await (await fetch(`${studio.url}/api/studio/jobs`)).json()) as { jobs: { id: string; status: string }[] };
  const name = `tiny-copy-ft-${jobs.jobs.find((j) => j.status === 'finished')!.id.slice(0, 8)}`;
  // a new conversation with the fine-tune chosen (once the chat page has rendered it)
  await page.waitForFunction(`document.querySelector('select[name="model"]')?.value === ${JSON.stringify(name)}`, undefined, { timeout: 10_000 });
  await page.locator('textarea[name="prompt"]').fill('Hi');
  await page.getByRole('button', { name: 'Send' }).click();
  await page.locator('.msg.assistant').last().waitFor();
  await page.goto(`${studio.url}/#training`);
  await page.locator('.job', { hasText: 'tiny-copy · lora' }).first().getByRole('button', { name: 'Compare with base' }).click();
  await page.waitForURL(/#arena$/);
  assert.deepEqual(await page.locator('.pick input:checked').evaluateAll((els) => els.map((e) => e.getAttribute('name'))), ['pick-tiny-copy', `pick-${name}`]);
  await page.screenshot({ path: `${SHOTS}/arena-finetune.png`, fullPage: true });
});

test('arena: a model against its own int8 copy, loaded from the models page', async () => {
  await page.goto(`${studio.url}/#models`);
  const row = page.locator('tr[data-model="tiny"]');
  await row.locator('select[name="quant-tiny"]').selectOption('int8');
  await row.getByRole('button', { name: 'Quantize' }).click();
  await page.locator('table.derived tr[data-model="tiny@int8"]', { hasText: 'KiB' }).waitFor();
  await page.goto(`${studio.url}/#arena`);
  // pick exactly tiny and tiny@int8
  while (await page.locator('.pick input:checked').count()) await page.locator('.pick input:checked').first().uncheck();
  await page.locator('input[name="pick-tiny"]').check();
  await page.locator('input[name="pick-tiny@int8"]').check();
  await page.locator('textarea[name="arena-prompt"]').fill('Name a colour.');
  await page.getByRole('button', { name: 'Run 2 models' }).click();
  for (const name of ['tiny', 'tiny@int8']) {
    await page.locator(`.run[data-model="${name}"] .timing`).filter({ hasText: /^TTFT \d+ ms · [\d.]+ tok\/s · total \d+ ms$/ }).waitFor();
  }
  await page.screenshot({ path: `${SHOTS}/arena-quant.png`, fullPage: true });
});
