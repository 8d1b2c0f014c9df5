// Continuous batching through HTTP with the official openai client against `kestrel serve`:
// 16 concurrent streams of different prompt and output lengths (greedy, and some seeded samples)
// each give exactly the text the same request gets alone; a client that disconnects mid-stream
// frees its KV blocks at once while the other streams go on (kestrel_kv_blocks_used in /metrics).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type RunningServer, removeFixture, startServer, writeServeFixture } from './serve_fixture.js';

const fx = writeServeFixture();
let server: RunningServer;

before(async () => {
  // small prefill chunks: longer prompts are split over steps while the others decode
  server = await startServer(['--model', `tiny=${fx.modelDir}`, '--kv-cache-mb', '2', '--prefill-chunk', '8']);
});

after(async () => {
  await server?.stop();
  removeFixture(fx.root);
});

const metric = async (name: string): Promise<number> => {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line, `metric ${name} in\n${text}`);
  return Number(line.split(' ').at(-1));
};

interface Spec {
  prompt: string;
  max_tokens: number;
  temperature: number;
  seed?: number;
}

const SPECS: Spec[] = Array.from({ length: 16 }, (_, i) => ({
  prompt: `request ${i}: ${'abcdefgh'.slice(0, 1 + (i % 8)).repeat(1 + (i % 5))}`,
  max_tokens: 3 + ((i * 5) % 11),
  temperature: i % 4 === 3 ? 0.8 : 0,
  ...(i % 4 === 3 ? { seed: 1000 + i } : {}),
}));

/** Streams one completion; resolves with its text. */
async function streamText(s: Spec): Promise<string> {
  const stream = await server.client().completions.create({ model: 'tiny', stream: true, ignore_eos: true, ...s } as never) as unknown as AsyncIterable<{ choices: { text: string }[] }>;
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.text ?? '';
  return text;
}

describe('kestrel serve: continuous batching', () => {
  test('16 concurrent streams each equal their own single-request run (greedy and seeded)', async () => {
    const alone: string[] = [];
    for (const s of SPECS) alone.push(await streamText(s));
    const together = await Promise.all(SPECS.map(streamText));
    SPECS.forEach((s, i) => assert.equal(together[i], alone[i], `stream ${i} (${s.prompt.length} prompt chars, ${s.max_tokens} tokens, temperature ${s.temperature})`));
    assert.ok(alone.every((t) => t.length > 0));
    assert.equal(await metric('kestrel_kv_blocks_used'), 0, 'every block is free again');
  });

  test('a disconnect mid-stream frees its blocks at once while another stream goes on', async () => {
    const other = streamText({ prompt: 'keep going', max_tokens: 60, temperature: 0 });
    const abort = new AbortController();
    const stream = await server.client().completions.create(
      { model: 'tiny', prompt: 'x'.repeat(100), max_tokens: 50, temperature: 0, ignore_eos: true, stream: true, n: 4 } as never,
      { signal: abort.signal },
    ) as unknown as AsyncIterable<unknown>;
    let usedBefore = 0;
    for await (const _ of stream) {
      usedBefore = await metric('kestrel_kv_blocks_used');
      abort.abort();
      break;
    }
    // 4 rows of a 100+-token prompt hold at least 4 x 7 blocks of 16 tokens
    assert.ok(usedBefore >= 28, `${usedBefore} blocks in use before the disconnect`);
    let used = usedBefore;
    for (let i = 0; i < 200 && used > usedBefore - 28; i++) {
      used = await metric('kestrel_kv_blocks_used');
      if (used > usedBefore - 28) await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(used <= usedBefore - 28, `the disconnected request's blocks were freed (${usedBefore} -> ${used})`);
    assert.ok((await other).length > 0, 'the other stream finished');
    assert.equal(await metric('kestrel_kv_blocks_used'), 0);
  });
});
