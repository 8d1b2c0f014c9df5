// node-llama-cpp (llama.cpp's prebuilt CPU build) from peers/llama-cpp, the consumer that checks
// Kestrel's GGUF files. Not installed is a failure with the command that installs it, never a skip.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const PEER_ENTRY = join(ROOT, 'peers', 'llama-cpp', 'node_modules', 'node-llama-cpp', 'dist', 'index.js');

type NodeLlamaCpp = typeof import('../../peers/llama-cpp/node_modules/node-llama-cpp/dist/index.js');
type Llama = Awaited<ReturnType<NodeLlamaCpp['getLlama']>>;
type Sequence = ReturnType<Awaited<ReturnType<Awaited<ReturnType<Llama['loadModel']>>['createContext']>>['getSequence']>;
type Token = import('../../peers/llama-cpp/node_modules/node-llama-cpp/dist/index.js').Token;

/** llama.cpp's branded token type for plain ids. */
const tokens = (ids: number[]): Token[] => ids.map((id) => id as Token);

let llama: Promise<Llama> | null = null;

/** The llama.cpp runtime (CPU, prebuilt, no download); throws naming the install command when absent. */
export function llamaCpp(): Promise<Llama> {
  if (!existsSync(PEER_ENTRY)) throw new Error(`node-llama-cpp is not installed in peers/llama-cpp (${PEER_ENTRY} missing): run  npm ci --prefix peers/llama-cpp --omit=optional`);
  llama ??= (import(pathToFileURL(PEER_ENTRY).href) as Promise<NodeLlamaCpp>).then((m) => m.getLlama({ gpu: false, build: 'never', logLevel: m.LlamaLogLevel.error }));
  return llama;
}

/** Opens a GGUF in llama.cpp, runs fn on a fresh 1-thread sequence, frees everything. */
async function withSequence<T>(file: string, fn: (seq: Sequence) => Promise<T>): Promise<T> {
  const model = await (await llamaCpp()).loadModel({ modelPath: file });
  try {
    const ctx = await model.createContext({ contextSize: 64, threads: 1 });
    try {
      return await fn(ctx.getSequence());
    } finally {
      await ctx.dispose();
    }
  } finally {
    await model.dispose();
  }
}

/** llama.cpp's greedy continuation of prompt ids (n new tokens, or fewer if it stops at an EOG token). */
export function llamaCppGreedy(file: string, prompt: number[], n: number): Promise<number[]> {
  return withSequence(file, async (seq) => {
    const out: number[] = [];
    for await (const t of seq.evaluate(tokens(prompt), { temperature: 0 })) {
      out.push(t as number);
      if (out.length >= n) break;
    }
    return out;
  });
}

/** llama.cpp's next-token probabilities after prompt ids, by token id. */
export function llamaCppNextProbs(file: string, prompt: number[], vocab: number): Promise<Float64Array> {
  return withSequence(file, async (seq) => {
    const out = new Float64Array(vocab);
    for await (const r of seq.evaluateWithMetadata(tokens(prompt), { probabilities: true }, { temperature: 0 })) {
      for (const [id, p] of r.probabilities) out[id as number] = p;
      break;
    }
    return out;
  });
}
