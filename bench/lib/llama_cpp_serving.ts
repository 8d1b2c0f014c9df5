// The serving benchmark's peer: llama.cpp's server-equivalent through node-llama-cpp 3.21.1
// (peers/llama-cpp, its prebuilt CPU build): one context with `sequences: N` and N prompts
// evaluated at once, which node-llama-cpp batches into shared llama_decode calls (what
// llama-server's parallel slots do). The model is Kestrel's, exported to GGUF by Kestrel's writer.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as k from '../../src/index.js';
import { exportGguf } from '../../src/gguf/export.js';
import { writeTinyTokenizer } from '../../test/gguf/fixture_folder.js';
import { BENCH_DIR } from './report.js';

type NodeLlamaCpp = typeof import('../../peers/llama-cpp/node_modules/node-llama-cpp/dist/index.js');
type Llama = Awaited<ReturnType<NodeLlamaCpp['getLlama']>>;
type Token = import('../../peers/llama-cpp/node_modules/node-llama-cpp/dist/index.js').Token;
const PEER = join(BENCH_DIR, '..', 'peers', 'llama-cpp', 'node_modules', 'node-llama-cpp', 'dist', 'index.js');

/** One concurrency level's figures (the same ones the Kestrel side reports). */
export interface StreamsResult {
  streams: number;
  aggregateTokPerSec: number;
  ttftP50Ms: number;
  ttftP99Ms: number;
}

export const percentile = (xs: number[], q: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

/** llama.cpp, or the reason it cannot run here. */
export async function loadLlamaCpp(): Promise<Llama | string> {
  if (!existsSync(PEER)) return 'node-llama-cpp is not installed (npm ci --prefix peers/llama-cpp --omit=optional)';
  const m = (await import(pathToFileURL(PEER).href)) as NodeLlamaCpp;
  return m.getLlama({ gpu: false, build: 'never', logLevel: m.LlamaLogLevel.error });
}

/** Writes the model as GGUF (`type`: f32 matches Kestrel's float32 serving) with a tokenizer of its vocabulary size; the file's path. */
export async function exportForPeer(model: k.CausalLM, work: string, type: 'f32' | 'f16'): Promise<string> {
  const tokDir = join(work, 'peer-tokenizer');
  mkdirSync(tokDir, { recursive: true });
  // token ids go in and out as ids: the tokenizer only has to fit the vocabulary
  writeTinyTokenizer(tokDir, { vocabSize: model.config.vocabSize, special: { 1: '<s>', 2: '</s>' }, bos: '<s>', eos: '</s>' });
  const file = join(work, `peer.${type}.gguf`);
  exportGguf(model, await k.loadTokenizer(tokDir), file, { type, dir: tokDir });
  return file;
}

/**
 * N concurrent greedy generations of `tokens` tokens from `prompt` in one llama.cpp context with
 * N sequences; aggregate tok/s over the wall time, time to first token per stream, and each
 * stream's tokens (to check that batching left llama.cpp's greedy output alone).
 */
export async function llamaCppStreams(llama: Llama, file: string, o: { prompt: number[]; tokens: number; streams: number; threads: number }): Promise<StreamsResult & { outputs: number[][] }> {
  const model = await llama.loadModel({ modelPath: file });
  try {
    const ctx = await model.createContext({ contextSize: o.streams * (o.prompt.length + o.tokens + 16), sequences: o.streams, batchSize: 512, threads: o.threads });
    try {
      const one = async (t0: number): Promise<{ ttftMs: number; ids: number[] }> => {
        const seq = ctx.getSequence();
        const ids: number[] = [];
        let first = 0;
        for await (const t of seq.evaluate(o.prompt.map((x) => x as Token), { temperature: 0 })) {
          if (!ids.length) first = performance.now();
          ids.push(t);
          if (ids.length >= o.tokens) break;
        }
        return { ttftMs: first - t0, ids };
      };
      const t0 = performance.now();
      const runs = await Promise.all(Array.from({ length: o.streams }, () => one(t0)));
      const wall = performance.now() - t0;
      const ttft = runs.map((r) => r.ttftMs);
      return { streams: o.streams, aggregateTokPerSec: (o.streams * o.tokens) / (wall / 1e3), ttftP50Ms: percentile(ttft, 0.5), ttftP99Ms: percentile(ttft, 0.99), outputs: runs.map((r) => r.ids) };
    } finally {
      await ctx.dispose();
    }
  } finally {
    await model.dispose();
  }
}
