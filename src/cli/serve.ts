// `kestrel serve --model DIR [--model NAME=DIR ...] [--adapter NAME=DIR ...] [--port 8000]
// [--host 127.0.0.1] [--api-key KEY] [--max-queue N]`: the OpenAI-compatible server. It binds
// loopback by default; another interface needs --api-key (as vLLM requires), so a model is never
// served to the network unauthenticated. Prints its URL once listening; SIGINT/SIGTERM stop it.
import { once } from 'node:events';
import type { Server } from 'node:http';
import { isIP } from 'node:net';
import { BatchingEngine } from '../serve/batching_engine.js';
import { type Engine, SerialEngine } from '../serve/engine.js';
import { checkInferenceQuant } from '../quant/quantize_model.js';
import { ModelRegistry } from '../serve/model_registry.js';
import { createApiServer, listen } from '../serve/server.js';
import { SERVE_DEFAULTS } from './defaults.js';
import { numberFlag, parseFlags } from './flags.js';

/** The engine the flags ask for: continuous batching (default) or one request at a time. */
export function engineFromFlags(values: Record<string, string | boolean | string[] | undefined>, maxQueue: number): Engine {
  const kind = (values.engine as string | undefined) ?? SERVE_DEFAULTS.engine;
  if (kind === 'serial') return new SerialEngine(maxQueue);
  if (kind !== 'batch') throw new Error(`--engine must be batch or serial, got '${kind}'`);
  return new BatchingEngine({
    maxQueue,
    kvCacheMb: numberFlag(values, 'kv-cache-mb', { min: 1 }) ?? SERVE_DEFAULTS.kvCacheMb,
    blockSize: numberFlag(values, 'block-size', { int: true, min: 1, max: 1024 }) ?? SERVE_DEFAULTS.blockSize,
    prefillChunk: numberFlag(values, 'prefill-chunk', { int: true, min: 1 }) ?? SERVE_DEFAULTS.prefillChunk,
    maxBatch: numberFlag(values, 'max-batch', { int: true, min: 1 }) ?? SERVE_DEFAULTS.maxBatch,
  });
}

/** The engine flags, shared by `kestrel serve` and `kestrel studio`. */
export const ENGINE_FLAGS = {
  engine: { type: 'string' }, 'kv-cache-mb': { type: 'string' }, 'block-size': { type: 'string' }, 'prefill-chunk': { type: 'string' }, 'max-batch': { type: 'string' },
} as const;

export const isLoopback = (host: string): boolean => host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));

/** Listens, prints announce(url), serves until SIGINT/SIGTERM, then closes, calls onStop and frees the models. */
export async function serveUntilSignal(name: string, server: Server, o: { port: number; host: string; models: ModelRegistry; onStop?: () => void }, announce: (url: string) => string): Promise<void> {
  try {
    const url = await listen(server, o.port, o.host);
    process.stdout.write(`${name}: ${announce(url)}\n`);
    const signal = await Promise.race([once(process, 'SIGINT'), once(process, 'SIGTERM')].map((p) => p.then(() => 'stop')));
    process.stderr.write(`${name}: ${signal}ping\n`);
    server.closeAllConnections();
    server.close();
  } finally {
    o.onStop?.();
    o.models.dispose();
  }
}

export async function serveCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    model: { type: 'string', multiple: true }, adapter: { type: 'string', multiple: true }, port: { type: 'string' }, host: { type: 'string' },
    'api-key': { type: 'string' }, 'max-queue': { type: 'string' }, 'max-body-bytes': { type: 'string' }, quant: { type: 'string' }, ...ENGINE_FLAGS,
  });
  const quant = values.quant === undefined ? undefined : checkInferenceQuant(values.quant, '--quant');
  const port = numberFlag(values, 'port', { int: true, min: 0, max: 65535 }) ?? SERVE_DEFAULTS.port;
  const maxQueue = numberFlag(values, 'max-queue', { int: true, min: 0 }) ?? SERVE_DEFAULTS.maxQueue;
  const maxBodyBytes = numberFlag(values, 'max-body-bytes', { int: true, min: 1 }) ?? SERVE_DEFAULTS.maxBodyBytes;
  const host = values.host ?? SERVE_DEFAULTS.host;
  const apiKey = values['api-key'] ?? process.env.KESTREL_API_KEY ?? null;
  if (!isLoopback(host) && !apiKey) throw new Error(`--host ${host} serves other machines: give --api-key KEY (or KESTREL_API_KEY) so requests must carry it`);
  const models = await ModelRegistry.load(values.model ?? [], values.adapter ?? [], quant);
  const { server } = createApiServer({ models, engine: engineFromFlags(values, maxQueue), apiKey, maxBodyBytes });
  await serveUntilSignal('kestrel serve', server, { port, host, models }, (url) => `listening on ${url} (models: ${models.list().map((m) => m.id).join(', ')})`);
  return 0;
}
