// Batch-1 decode and prefill of Kestrel next to llama.cpp (node-llama-cpp 3.21.1 from
// peers/llama-cpp, its prebuilt CPU build) on random models of DESIGN.md's smol135m and qwen05b
// shapes, exported to GGUF by Kestrel's writer at f16 / q8_0 / q4_0, in one run (issue 10).
// llama.cpp runs at 1 and at all threads (on 2 vCPUs 1 thread is often faster) and its best is
// the peer. Each format's weight bytes per token give the GB/s each side streams.
// Kestrel decodes at float32 and with `--quant` bf16 / int8 / q4 (KESTREL_VARIANTS), each against
// llama.cpp's f16 / q8_0 / q4_0 as a ratio and against the memory-bandwidth bound measured in the
// same run (a streaming read; bytes of weight per token), both sides.
// Run: node --import tsx bench/llama_cpp.ts [--configs smol135m,qwen05b] [--prompt 128] [--decode 64] [--reps 2]
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import * as k from '../src/index.js';
import { exportGguf } from '../src/gguf/export.js';
import { GgufFile } from '../src/gguf/reader.js';
import { decoderConfig } from '../src/models/registry.js';
import { writeTinyTokenizer } from '../test/gguf/fixture_folder.js';
import { BENCH_DIR, median, writeResult } from './lib/report.js';
import { bytesPerToken, memoryProbeBytes, readBandwidth } from './lib/decoder_bench.js';
import { loadNative } from '../src/backend/addon.js';

const SHAPES: Record<string, { dim: number; layers: number; heads: number; kv: number; ffn: number; vocab: number }> = {
  smol135m: { dim: 576, layers: 30, heads: 9, kv: 3, ffn: 1536, vocab: 49152 },
  qwen05b: { dim: 896, layers: 24, heads: 14, kv: 2, ffn: 4864, vocab: 151936 },
};

/**
 * Kestrel's decode variants, each next to the llama.cpp type of the same weight bytes: float32 as
 * built, and `--quant` bf16 / int8 / q4 (quantizeForInference: every Linear and the head through
 * the decode GEMV; int8 and q4 with int8 activations where the CPU has the integer path, like
 * llama.cpp's q8_0 / q4_0 dot products).
 */
const KESTREL_VARIANTS: Record<string, { peerFormat: (typeof PEER_FORMATS)[number]; quant: k.quant.InferenceQuant | null }> = {
  float32: { peerFormat: 'f16', quant: null },
  bf16: { peerFormat: 'f16', quant: 'bf16' },
  int8: { peerFormat: 'q8_0', quant: 'int8' },
  q4: { peerFormat: 'q4_0', quant: 'q4' },
};

const PEER_FORMATS = ['f16', 'q8_0', 'q4_0'] as const;

interface Speed { prefillTokPerSec: number; decodeTokPerSec: number }

function build(name: string): k.CausalLM {
  const s = SHAPES[name];
  const config = decoderConfig({
    model_type: 'llama', vocab_size: s.vocab, hidden_size: s.dim, intermediate_size: s.ffn, num_hidden_layers: s.layers,
    num_attention_heads: s.heads, num_key_value_heads: s.kv, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true,
    max_position_embeddings: 4096, bos_token_id: 1, eos_token_id: 2,
  }, `${name} (bench)`);
  k.manualSeed(0);
  return new k.CausalLM(config, {}).eval();
}

const prompt = (n: number, vocab: number, seed: number): number[] => Array.from({ length: n }, (_, i) => 3 + ((i * 7919 + seed * 104729) % (vocab - 3)));

/** Kestrel: prefill = time to the first token, decode = the rest; medians over reps after a warm-up. */
async function timeKestrel(model: k.CausalLM, p: number, decode: number, reps: number): Promise<Speed> {
  const pre: number[] = [], dec: number[] = [];
  for (let r = 0; r <= reps; r++) {
    const ids = k.tensor([prompt(p, model.config.vocabSize, r)], { dtype: 'int64' });
    const t0 = performance.now();
    let tFirst = 0;
    for await (const { step } of model.stream(ids, { maxNewTokens: decode + 1, temperature: 0, eosTokenId: [] })) if (step === 0) tFirst = performance.now();
    const t1 = performance.now();
    ids.dispose();
    if (r === 0) continue;
    pre.push(tFirst - t0);
    dec.push(t1 - tFirst);
  }
  return { prefillTokPerSec: p / (median(pre) / 1e3), decodeTokPerSec: decode / (median(dec) / 1e3) };
}

type NodeLlamaCpp = typeof import('../peers/llama-cpp/node_modules/node-llama-cpp/dist/index.js');
type Token = import('../peers/llama-cpp/node_modules/node-llama-cpp/dist/index.js').Token;
const PEER = join(BENCH_DIR, '..', 'peers', 'llama-cpp', 'node_modules', 'node-llama-cpp', 'dist', 'index.js');

/** llama.cpp on one GGUF file with `threads`: same prompt and counts as Kestrel. */
async function timeLlamaCpp(llama: Awaited<ReturnType<NodeLlamaCpp['getLlama']>>, file: string, o: { threads: number; vocab: number; p: number; decode: number; reps: number }): Promise<Speed> {
  const { threads, p, decode, reps } = o;
  const model = await llama.loadModel({ modelPath: file });
  const pre: number[] = [], dec: number[] = [];
  try {
    for (let r = 0; r <= reps; r++) {
      const ctx = await model.createContext({ contextSize: p + decode + 8, batchSize: p, threads });
      const seq = ctx.getSequence();
      const ids = prompt(p, o.vocab, r).map((t) => t as Token);
      const t0 = performance.now();
      let tFirst = 0, n = 0;
      for await (const _ of seq.evaluate(ids, { temperature: 0 })) {
        if (n++ === 0) tFirst = performance.now();
        if (n > decode) break;
      }
      const t1 = performance.now();
      await ctx.dispose();
      if (r === 0) continue;
      pre.push(tFirst - t0);
      dec.push(t1 - tFirst);
    }
  } finally {
    await model.dispose();
  }
  return { prefillTokPerSec: p / (median(pre) / 1e3), decodeTokPerSec: decode / (median(dec) / 1e3) };
}

/** Bytes read per decoded token: every weight once (the tied embedding's rows are a gather, not counted). */
function weightBytes(file: string): number {
  const g = new GgufFile(file);
  try {
    return [...g.tensors.values()].filter((t) => t.name !== 'token_embd.weight' || !g.tensors.has('output.weight')).reduce((s, t) => s + t.bytes, 0);
  } finally {
    g.close();
  }
}

/** Prompt tokens of the default run, whose result is llama_cpp.json (others: llama_cpp_promptN.json). */
const DEFAULT_PROMPT = 128;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { configs: { type: 'string', default: 'smol135m,qwen05b' }, prompt: { type: 'string', default: String(DEFAULT_PROMPT) }, decode: { type: 'string', default: '64' }, reps: { type: 'string', default: '2' }, help: { type: 'boolean', default: false } } });
  if (values.help) {
    console.log([
      'bench/llama_cpp.ts: batch-1 decode and prefill, Kestrel float32/bf16/int8/q4 beside llama.cpp f16/q8_0/q4_0 (node-llama-cpp), one run',
      '  --configs LIST   model shapes (smol135m, qwen05b; default smol135m,qwen05b)',
      '  --prompt N       prompt tokens for prefill (default 128)',
      '  --decode N       decoded tokens timed (default 64)',
      '  --reps N         timed repetitions after a warm-up, median kept (default 2)',
      'Writes bench/results/llama_cpp.json (another --prompt: llama_cpp_promptN.json, so a short-prompt run keeps its own record).',
      'Example: node --import tsx bench/llama_cpp.ts --configs smol135m --prompt 16 --decode 16 --reps 1',
    ].join('\n'));
    return;
  }
  if (!existsSync(PEER)) throw new Error(`node-llama-cpp is not installed: run  npm ci --prefix peers/llama-cpp --omit=optional`);
  const m = (await import(pathToFileURL(PEER).href)) as NodeLlamaCpp;
  const llama = await m.getLlama({ gpu: false, build: 'never', logLevel: m.LlamaLogLevel.error });
  const [p, decode, reps] = [Number(values.prompt), Number(values.decode), Number(values.reps)];
  const threadCounts = [...new Set([1, cpus().length])];
  const work = mkdtempSync(join(tmpdir(), 'kestrel-bench-gguf-'));
  const rows: Record<string, unknown>[] = [];
  try {
    for (const name of values.configs!.split(',')) {
      const tokDir = join(work, `${name}-tokenizer`);
      mkdirSync(tokDir);
      writeTinyTokenizer(tokDir, { vocabSize: SHAPES[name].vocab, special: { 1: '<s>', 2: '</s>' }, bos: '<s>', eos: '</s>' });
      const tok = await k.loadTokenizer(tokDir);
      const peer: Record<string, { threads: Record<number, Speed>; best: Speed; weightBytes: number }> = {};
      const model = build(name);
      for (const format of PEER_FORMATS) {
        const file = join(work, `${name}.${format}.gguf`);
        exportGguf(model, tok, file, { type: format, dir: tokDir });
        const byThreads: Record<number, Speed> = {};
        for (const t of threadCounts) byThreads[t] = await timeLlamaCpp(llama, file, { threads: t, vocab: SHAPES[name].vocab, p, decode, reps });
        const all = Object.values(byThreads);
        peer[format] = { threads: byThreads, best: { prefillTokPerSec: Math.max(...all.map((s) => s.prefillTokPerSec)), decodeTokPerSec: Math.max(...all.map((s) => s.decodeTokPerSec)) }, weightBytes: weightBytes(file) };
        rmSync(file);
        console.log(`${name} llama.cpp ${format}: decode ${all.map((s, i) => `${s.decodeTokPerSec.toFixed(1)} (${threadCounts[i]}t)`).join(' / ')} tok/s, prefill ${all.map((s, i) => `${s.prefillTokPerSec.toFixed(0)} (${threadCounts[i]}t)`).join(' / ')} tok/s`);
      }
      model.dispose();
      // the batch-1 decode bound of this run: streaming read GB/s / weight bytes per token
      const streamGBs = readBandwidth(memoryProbeBytes(256e6));
      for (const [variant, v] of Object.entries(KESTREL_VARIANTS)) {
        const model = build(name);
        if (v.quant) k.quantizeForInference(model, v.quant);
        const bytes = bytesPerToken(model);
        const s = await timeKestrel(model, p, decode, reps);
        model.dispose();
        const ref = peer[v.peerFormat];
        const bound = (streamGBs * 1e9) / bytes, peerBound = (streamGBs * 1e9) / ref.weightBytes;
        const row = {
          config: name, kestrel: variant, peerFormat: v.peerFormat, ...s, llamaCpp: ref.best,
          decodeRatio: s.decodeTokPerSec / ref.best.decodeTokPerSec, prefillRatio: s.prefillTokPerSec / ref.best.prefillTokPerSec,
          kestrelWeightMBPerToken: bytes / 1e6, streamGBs, boundTokPerSec: bound, fractionOfBound: s.decodeTokPerSec / bound,
          llamaCppFractionOfBound: ref.best.decodeTokPerSec / peerBound, llamaCppWeightGBs: (ref.weightBytes * ref.best.decodeTokPerSec) / 1e9,
        };
        rows.push(row);
        console.log(`${name} kestrel ${variant.padEnd(7)} decode ${s.decodeTokPerSec.toFixed(1).padStart(6)} tok/s = ${row.decodeRatio.toFixed(2)}x llama.cpp ${v.peerFormat.padEnd(4)} (${ref.best.decodeTokPerSec.toFixed(1)}); ` +
          `${(100 * row.fractionOfBound).toFixed(0)}% of its bound (llama.cpp ${(100 * row.llamaCppFractionOfBound).toFixed(0)}%); prefill ${s.prefillTokPerSec.toFixed(0)} tok/s = ${row.prefillRatio.toFixed(2)}x`);
      }
      rows.push({ config: name, llamaCppAll: peer });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const path = writeResult(p === DEFAULT_PROMPT ? 'llama_cpp' : `llama_cpp_prompt${p}`, { loadAverage1m: loadavg()[0], quantGemv: loadNative()?.info().quantGemv, threads: { kestrel: process.env.KESTREL_NUM_THREADS ?? 'all cores', llamaCpp: threadCounts }, promptTokens: p, decodeTokens: decode, reps, peer: 'node-llama-cpp 3.21.1 (prebuilt CPU build), best of its thread counts', rows });
  console.log(`wrote ${path}`);
}

await main();
