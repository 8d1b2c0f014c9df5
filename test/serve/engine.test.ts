// SerialEngine without HTTP: one job runs at a time, waiting jobs start in arrival order, a full
// queue refuses with a 429 ApiError, a job aborted while queued leaves the queue without running,
// and one aborted while running stops within a step and frees the engine.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { decoderConfig } from '../../src/models/registry.js';
import { type GenerationJob, SerialEngine } from '../../src/serve/engine.js';
import { ApiError } from '../../src/serve/errors.js';

k.manualSeed(2);
const model = new k.CausalLM(decoderConfig({
  model_type: 'llama', vocab_size: 32, hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64,
}, 'config.json'));

function job(tokens: number, signal = new AbortController().signal): GenerationJob {
  return { model, adapter: null, rows: [[1, 2, 3]], options: { maxNewTokens: tokens, temperature: 0, eosTokenId: [] }, topLogprobs: null, signal };
}

/** Drains a job, noting its name in `order` at its first step; returns the steps it yielded. */
async function drain(steps: AsyncGenerator<unknown>, name: string, order: string[]): Promise<number> {
  let n = 0;
  for await (const _ of steps) if (n++ === 0) order.push(name);
  return n;
}

describe('SerialEngine', () => {
  test('FIFO with a queue limit: the third job while one runs and one waits gets 429', async () => {
    const engine = new SerialEngine(1);
    const order: string[] = [];
    const a = drain(engine.submit(job(5)), 'a', order);
    const b = drain(engine.submit(job(3)), 'b', order);
    assert.deepEqual(engine.stats(), { queued: 1, running: 1 });
    assert.throws(() => engine.submit(job(1)), (e: unknown) => e instanceof ApiError && e.status === 429 && e.code === 'queue_full');
    assert.deepEqual(await Promise.all([a, b]), [5, 3]);
    assert.deepEqual(order, ['a', 'b']);
    assert.deepEqual(engine.stats(), { queued: 0, running: 0 });
  });

  test('a job aborted while queued never runs; one aborted while running stops and frees the engine', async () => {
    const engine = new SerialEngine(4);
    const order: string[] = [];
    const stopA = new AbortController();
    const stopB = new AbortController();
    const steps = engine.submit(job(40, stopA.signal));
    const b = drain(engine.submit(job(5, stopB.signal)), 'b', order);
    const c = drain(engine.submit(job(2)), 'c', order);
    stopB.abort();
    assert.deepEqual(engine.stats(), { queued: 1, running: 1 }, 'b left the queue at once');
    let seen = 0;
    for await (const _ of steps) if (++seen === 3) stopA.abort();
    assert.equal(seen, 3, 'a stopped at the step it was aborted in');
    assert.deepEqual(await Promise.all([b, c]), [0, 2]);
    assert.deepEqual(order, ['c']);
    assert.deepEqual(engine.stats(), { queued: 0, running: 0 });
  });
});
