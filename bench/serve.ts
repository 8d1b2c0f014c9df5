// Serving benchmark (issue 10): what the HTTP path costs over in-process generation, and how the
// engine scales with concurrent streams, side by side with llama.cpp's server-equivalent. A random
// model of DESIGN.md's smol135m (or `small`) shape with the GPT-2 tokenizer is saved to a temp
// folder and served by `kestrel serve`; greedy tokens over SSE are checked equal to model.stream's
// before anything is timed, and so is every stream of each concurrent run. Reports decode tok/s
// of one stream against in-process decode (a ratio, same run), and aggregate tok/s with p50/p99
// time to first token at 1, 8 and 32 concurrent streams, with the ratio of the 8-stream aggregate
// to the 1-stream one (target >= 4 with continuous batching; --engine serial shows the
// one-at-a-time baseline). The peer: the same weights exported to GGUF (f32 like Kestrel's
// float32, or --peer-type f16) and run by node-llama-cpp with one context of N parallel
// sequences (bench/lib/llama_cpp_serving.ts) at 1 thread and at all cores, its best per row.
// Run: npm run bench:serve -- [--config smol135m|small] [--tokens 48] [--streams 1,8,32] [--engine batch|serial] [--peer-type f32|f16] [--no-peer]
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as k from '../src/index.js';
import { decoderConfig } from '../src/models/registry.js';
import { SHARED_BENCH, median, writeResult } from './lib/report.js';
import { type StreamsResult, exportForPeer, llamaCppStreams, loadLlamaCpp, percentile } from './lib/llama_cpp_serving.js';

const SHAPES: Record<string, Record<string, number>> = {
  small: { hidden_size: 512, num_hidden_layers: 8, num_attention_heads: 8, num_key_value_heads: 2, intermediate_size: 1376, vocab_size: 8000 },
  smol135m: { hidden_size: 576, num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3, intermediate_size: 1536, vocab_size: 49152 },
};
const PROMPT = Array.from({ length: 32 }, (_, i) => 100 + i * 37); // token ids, all inside both vocabularies

function writeModel(shape: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'kestrel-bench-serve-'));
  const hfConfig = { model_type: 'llama', ...SHAPES[shape], max_position_embeddings: 1024, tie_word_embeddings: true, eos_token_id: 50256 };
  k.manualSeed(0);
  const model = new k.CausalLM(decoderConfig(hfConfig, `${shape} (bench)`));
  k.savePretrained(dir, { model, hfConfig });
  model.dispose();
  const gpt2 = join(SHARED_BENCH, '..', 'fixtures', 'tokenizers', 'gpt2');
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'vocab.json', 'merges.txt']) copyFileSync(join(gpt2, f), join(dir, f));
  return dir;
}

async function startServer(dir: string, engine: string): Promise<{ url: string; child: ChildProcess }> {
  const args = ['serve', '--model', `m=${dir}`, '--port', '0', '--engine', engine, '--max-batch', '64'];
  const code = `import('./src/cli/main.ts').then(async (m) => { process.exitCode = await m.run(${JSON.stringify(args)}); })`;
  const child = spawn(process.execPath, ['--import', 'tsx', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('kestrel serve did not start in 120 s')), 120_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', () => reject(new Error('kestrel serve exited before listening')));
  });
  return { url, child };
}

/** One greedy SSE completion: its token count (from logprobs entries), time to first token and decode time. */
async function streamOnce(url: string, tokens: number): Promise<{ ids: number; text: string; ttftMs: number; decodeMs: number; startMs: number }> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', prompt: PROMPT, max_tokens: tokens, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true } }),
  });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let first = 0;
  let text = '';
  let ids = 0;
  let buf = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += Buffer.from(chunk).toString('utf8');
    let nl: number;
    while ((nl = buf.indexOf('\n\n')) >= 0) {
      const line = buf.slice(0, nl).replace(/^data: /, '');
      buf = buf.slice(nl + 2);
      if (line === '[DONE]') continue;
      const j = JSON.parse(line) as { choices: { text: string }[]; usage?: { completion_tokens: number } };
      if (!first) first = performance.now();
      text += j.choices[0]?.text ?? '';
      if (j.usage) ids = j.usage.completion_tokens;
    }
  }
  const end = performance.now();
  return { ids, text, ttftMs: first - t0, decodeMs: end - first, startMs: t0 };
}

/** Kestrel's side: validated single-stream speeds and one row per concurrency level. */
async function kestrelSide(url: string, model: k.CausalLM, tokenizer: k.Tokenizer, tokens: number, counts: number[]): Promise<{ own: number[]; localTps: number; servedTps: number; rows: StreamsResult[] }> {
  // validate: the served greedy text equals in-process greedy decoding of the same prompt
  const ids = k.tensor([PROMPT], { dtype: 'int64' });
  const own: number[] = [];
  const local: number[] = [];
  for (let r = 0; r < 3; r++) {
    own.length = 0;
    let tFirst = 0;
    for await (const { tokens: t, step } of model.stream(ids, { maxNewTokens: tokens, temperature: 0, eosTokenId: [] })) {
      if (step === 0) tFirst = performance.now();
      own.push(t[0]);
    }
    if (r) local.push(((tokens - 1) / (performance.now() - tFirst)) * 1e3); // run 0 warms up
  }
  ids.dispose();
  const want = tokenizer.decode(own, { skipSpecialTokens: true });
  const check = await streamOnce(url, tokens);
  if (check.text !== want || check.ids !== tokens) throw new Error(`served text differs from model.stream's:\n${JSON.stringify(check.text)}\n${JSON.stringify(want)}`);
  const single: number[] = [];
  for (let r = 0; r < 2; r++) {
    const s = await streamOnce(url, tokens);
    single.push(((tokens - 1) / s.decodeMs) * 1e3);
  }
  const rows: StreamsResult[] = [];
  for (const streams of counts) {
    const t0 = performance.now();
    const runs = await Promise.all(Array.from({ length: streams }, () => streamOnce(url, tokens)));
    const wall = performance.now() - t0;
    // batching must not change a greedy result: every concurrent stream equals the single one
    const wrong = runs.findIndex((r) => r.text !== want || r.ids !== tokens);
    if (wrong >= 0) throw new Error(`stream ${wrong} of ${streams} differs from model.stream's text`);
    const ttft = runs.map((r) => r.ttftMs);
    rows.push({ streams, aggregateTokPerSec: (streams * tokens) / (wall / 1e3), ttftP50Ms: percentile(ttft, 0.5), ttftP99Ms: percentile(ttft, 0.99) });
  }
  return { own, localTps: median(local), servedTps: median(single), rows };
}

interface PeerReport {
  type: string;
  /** per concurrency level: the best thread count's figures, and every thread count's */
  rows: (StreamsResult & { threads: number; byThreads: Record<number, StreamsResult> })[];
  /** leading greedy tokens of llama.cpp's single stream equal to Kestrel's (same weights, same prompt) */
  agreesWithKestrel: number;
  /** concurrent streams whose tokens differ from llama.cpp's own single stream */
  streamsDifferingFromSingle: number;
}

/** llama.cpp's side on the same weights, at each thread count; the best aggregate per level is the peer. */
async function peerSide(model: k.CausalLM, own: number[], tokens: number, counts: number[], type: 'f32' | 'f16'): Promise<PeerReport | string> {
  const llama = await loadLlamaCpp();
  if (typeof llama === 'string') return llama;
  const work = mkdtempSync(join(tmpdir(), 'kestrel-bench-serve-peer-'));
  try {
    const file = await exportForPeer(model, work, type);
    model.dispose(); // the peer gets the memory
    const threadCounts = [...new Set([1, cpus().length])];
    const report: PeerReport = { type, rows: [], agreesWithKestrel: 0, streamsDifferingFromSingle: 0 };
    let single: number[] | null = null;
    for (const streams of counts) {
      const byThreads: Record<number, StreamsResult> = {};
      for (const threads of threadCounts) {
        const { outputs, ...r } = await llamaCppStreams(llama, file, { prompt: PROMPT, tokens, streams, threads });
        byThreads[threads] = r;
        single ??= outputs[0];
        report.streamsDifferingFromSingle += outputs.filter((o) => JSON.stringify(o) !== JSON.stringify(single)).length;
      }
      const best = threadCounts.reduce((a, b) => (byThreads[b].aggregateTokPerSec > byThreads[a].aggregateTokPerSec ? b : a));
      report.rows.push({ ...byThreads[best], threads: best, byThreads });
    }
    while (report.agreesWithKestrel < own.length && single?.[report.agreesWithKestrel] === own[report.agreesWithKestrel]) report.agreesWithKestrel++;
    return report;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function printTable(shape: string, k8: { own: number[]; localTps: number; servedTps: number; rows: StreamsResult[] }, peer: PeerReport | string): void {
  console.log(`${shape}: in-process decode ${k8.localTps.toFixed(1)} tok/s, one SSE stream ${k8.servedTps.toFixed(1)} tok/s (ratio ${(k8.servedTps / k8.localTps).toFixed(2)})`);
  const p = typeof peer === 'string' ? null : peer;
  console.log(`streams  kestrel tok/s  TTFT p50/p99 ms${p ? `   llama.cpp (${p.type}) tok/s  TTFT p50/p99 ms  threads  kestrel/llama.cpp` : ''}`);
  k8.rows.forEach((r, i) => {
    const q = p?.rows[i];
    const peerCols = q ? `${q.aggregateTokPerSec.toFixed(1).padStart(26)} ${`${q.ttftP50Ms.toFixed(0)}/${q.ttftP99Ms.toFixed(0)}`.padStart(16)} ${String(q.threads).padStart(8)} ${(r.aggregateTokPerSec / q.aggregateTokPerSec).toFixed(2).padStart(18)}` : '';
    console.log(`${String(r.streams).padStart(7)} ${r.aggregateTokPerSec.toFixed(1).padStart(14)} ${`${r.ttftP50Ms.toFixed(0)}/${r.ttftP99Ms.toFixed(0)}`.padStart(16)}${peerCols}`);
  });
  if (p) console.log(`llama.cpp's single-stream greedy tokens equal Kestrel's for the first ${p.agreesWithKestrel} of ${k8.own.length} decoded tokens; ${p.streamsDifferingFromSingle} of its concurrent streams differ from its own single stream`);
  else console.log(`llama.cpp peer not run: ${peer}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      config: { type: 'string', default: 'smol135m' }, tokens: { type: 'string', default: '48' }, streams: { type: 'string', default: '1,8,32' }, engine: { type: 'string', default: 'batch' },
      'peer-type': { type: 'string', default: 'f32' }, 'no-peer': { type: 'boolean', default: false },
    },
  });
  const shape = values.config!;
  const load0 = loadavg()[0]; // the machine is shared: the figures hold for this load
  const tokens = Number(values.tokens);
  const counts = values.streams!.split(',').map(Number);
  const peerType = values['peer-type'] as 'f32' | 'f16';
  if (peerType !== 'f32' && peerType !== 'f16') throw new Error(`--peer-type must be f32 or f16, got ${peerType}`);
  const dir = writeModel(shape);
  const { model, tokenizer } = await k.loadCausalLM(dir);
  try {
    const server = await startServer(dir, values.engine!);
    let ours: Awaited<ReturnType<typeof kestrelSide>>;
    try {
      ours = await kestrelSide(server.url, model as k.CausalLM, tokenizer!, tokens, counts);
    } finally {
      server.child.kill('SIGTERM');
    }
    const loadKestrel = loadavg()[0];
    const peer = values['no-peer'] ? 'skipped (--no-peer)' : await peerSide(model as k.CausalLM, ours.own, tokens, counts, peerType);
    printTable(shape, ours, peer);
    const at = (n: number): number | undefined => ours.rows.find((r) => r.streams === n)?.aggregateTokPerSec;
    const ratio8 = at(8) && at(1) ? at(8)! / at(1)! : null;
    if (ratio8 !== null) console.log(`aggregate at 8 streams / at 1 stream: ${ratio8.toFixed(2)}x (target >= 4x)`);
    const p = typeof peer === 'string' ? null : peer;
    const path = writeResult('serve', {
      config: shape, promptTokens: PROMPT.length, decodeTokens: tokens, engine: values.engine, inProcessDecodeTokPerSec: ours.localTps, sseDecodeTokPerSec: ours.servedTps,
      sseOverInProcess: ours.servedTps / ours.localTps, concurrency: ours.rows, aggregate8Over1: ratio8,
      peer: p ? { name: 'llama.cpp via node-llama-cpp 3.21.1 (one context, N sequences), best of 1 and all threads', ...p, kestrelOverPeer: ours.rows.map((r, i) => ({ streams: r.streams, aggregate: r.aggregateTokPerSec / p.rows[i].aggregateTokPerSec })) } : peer,
      loadAverage1m: { atStart: load0, afterKestrel: loadKestrel, atEnd: loadavg()[0] },
    });
    console.log(`wrote ${path}`);
  } finally {
    model.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
