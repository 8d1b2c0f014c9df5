// GPU benchmarks of the CUDA backend (issue 18), each next to this machine's PyTorch running the
// same workload in the same run (bench/gpu/torch_peer.py): bf16 GEMM 8192^3, SmolLM-135M-shaped
// full fine-tuning and LoRA r16 (batch 16 x 1024, bf16 autocast), Llama-1B-shaped full
// fine-tuning (batch 8 x 2048), batch-1 greedy decode, and 8 concurrent greedy streams through the
// serving engine (continuous batching over the paged KV cache; PyTorch: HF generate on a batch of 8,
// whose prompts all have one length, its best case). Each Kestrel workload runs in a fresh
// process so its peak memory is its own. Prints one table; writes bench/results/gpu-bench.json.
// Run: node --import tsx bench/gpu/bench.ts [--only gemm,smol-train,...] [--no-peer] [--steps 4]
//      --profile: one step (or 16 tokens) per workload with KESTREL_CUDA_PROFILE=1, device time per
//      kernel to bench/results/gpu-profile.json (no peer, no throughput)
//      --smoke: every workload at toy sizes, to check the script itself (e.g. on the CUDA emulator:
//      KESTREL_CUDA_EMULATE=1 node --import tsx bench/gpu/bench.ts --smoke --no-peer)
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as k from '../../src/index.js';
import { decoderConfig } from '../../src/models/registry.js';
import { accumulateGradients } from '../../src/train/step.js';
import { decayParamGroups } from '../../src/train/param_groups.js';
import { median, writeResult } from '../lib/report.js';
import { BatchingEngine } from '../../src/serve/batching_engine.js';

const SHAPES = {
  smol135m: { hidden_size: 576, num_hidden_layers: 30, num_attention_heads: 9, num_key_value_heads: 3, intermediate_size: 1536, vocab_size: 49152, rope_theta: 10000 },
  llama1b: { hidden_size: 2048, num_hidden_layers: 16, num_attention_heads: 32, num_key_value_heads: 8, intermediate_size: 8192, vocab_size: 128256, rope_theta: 500000 },
} as const;
type Shape = keyof typeof SHAPES;

interface Workload {
  name: string;
  what: string;
  shape?: Shape;
  mode: 'gemm' | 'train' | 'lora' | 'decode' | 'serve' | 'copy';
  batch?: number;
  seq?: number;
  /** PyTorch 2.11 eager on an H200, from issue 18 (the goal is relative to the peer run here) */
  issue: string;
  goal: string;
}

const WORKLOADS: Workload[] = [
  { name: 'gemm', what: 'bf16 GEMM 8192^3 (TFLOP/s)', mode: 'gemm', issue: '775 TFLOP/s', goal: '>= 0.95x' },
  { name: 'smol-train', what: 'SmolLM-135M full FT 16x1024', shape: 'smol135m', mode: 'train', batch: 16, seq: 1024, issue: '119,442 tok/s, 24.9 GiB', goal: '>= 1.0x, <= 1.0x memory' },
  { name: 'smol-lora', what: 'SmolLM-135M LoRA r16 16x1024', shape: 'smol135m', mode: 'lora', batch: 16, seq: 1024, issue: '72,172 tok/s (PEFT)', goal: '>= 2x' },
  { name: 'llama1b-train', what: 'Llama-1B full FT 8x2048', shape: 'llama1b', mode: 'train', batch: 8, seq: 2048, issue: '46,119 tok/s, 71.5 GiB', goal: '>= 1.0x, <= 1.0x memory' },
  { name: 'llama1b-decode', what: 'Llama-1B batch-1 greedy decode', shape: 'llama1b', mode: 'decode', issue: '19.6 tok/s (HF generate)', goal: '>= 700 tok/s (40% of bound)' },
  { name: 'copy', what: 'host -> GPU copy of 1 GiB float32 (GB/s; the peer from pinned memory)', mode: 'copy', issue: '-', goal: 'pinned staging: near the peer' },
  { name: 'llama1b-serve8', what: 'Llama-1B 8 streams, serving engine (aggregate)', shape: 'llama1b', mode: 'serve', batch: 8, issue: '-', goal: 'issue 10: >= 4x batch-1' },
];

interface Result {
  /** with --profile: device ms per kernel for one step */
  profile?: { name: string; calls: number; ms: number }[];
  value: number;
  unit: string;
  peakGiB?: number;
  reservedGiB?: number;
  stepMs?: number;
  /** copy: GPU -> host GB/s, and the copies that went through the pinned staging buffers */
  downGBs?: number;
  stagedCopies?: number;
  error?: string;
}

const SMOKE = process.argv.includes('--smoke');
const PROFILE = process.argv.includes('--profile');

/** Runs fn with per-kernel device timing on; returns the table. */
async function profiled(fn: () => unknown): Promise<{ name: string; calls: number; ms: number }[]> {
  k.cuda.synchronize();
  k.cuda.profile();
  process.env.KESTREL_CUDA_PROFILE = '1';
  try {
    await fn();
  } finally {
    delete process.env.KESTREL_CUDA_PROFILE;
  }
  return k.cuda.profile().map((r) => ({ ...r, ms: Number(r.ms.toFixed(3)) }));
}
const TOY = { hidden_size: 64, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, intermediate_size: 128, vocab_size: 256, rope_theta: 10000 };
const dims = (shape: Shape) => (SMOKE ? TOY : SHAPES[shape]);
const sized = (w: Workload): { batch: number; seq: number } => (SMOKE ? { batch: 2, seq: 32 } : { batch: w.batch!, seq: w.seq! });

function model(shape: Shape): k.CausalLM {
  k.manualSeed(0);
  return new k.CausalLM(decoderConfig({ model_type: 'llama', ...dims(shape), rms_norm_eps: 1e-5, tie_word_embeddings: true, max_position_embeddings: 4096 }, `${shape} (bench)`), {});
}

const gib = (b: number): number => b / 2 ** 30;

function runGemm(): Result {
  const n = SMOKE ? 128 : 8192;
  const a = k.randn([n, n], { backend: 'cuda' }).to('bfloat16');
  const b = k.randn([n, n], { backend: 'cuda' }).to('bfloat16');
  for (let i = 0; i < 3; i++) k.matmul(a, b).dispose();
  k.cuda.synchronize();
  const runs = 10;
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) k.matmul(a, b).dispose();
  k.cuda.synchronize();
  const s = (performance.now() - t0) / 1e3 / runs;
  return { value: (2 * n ** 3) / s / 1e12, unit: 'TFLOP/s' };
}

async function runTrain(w: Workload, steps: number): Promise<Result> {
  const m = model(w.shape!);
  if (w.mode === 'lora') k.lora.injectLora(m, { r: 16, alpha: 16, targetModules: 'all-linear' });
  m.train();
  const opt = new k.optim.AdamW(decayParamGroups(m, 0.01), { lr: 1e-4 });
  const gen = new k.Generator(1);
  const { batch: B, seq: T } = sized(w);
  const ids = k.randint(0, dims(w.shape!).vocab_size, [B, T], { generator: gen, backend: 'cpu' }).toArray() as number[][];
  const batch = { inputIds: ids, labels: ids, attentionMask: ids.map((r) => r.map(() => 1)) };
  const times: number[] = [];
  const step = (): void => {
    accumulateGradients(m, [batch], { autocast: 'bfloat16' });
    opt.step();
    opt.zeroGrad();
  };
  if (PROFILE) {
    for (let i = 0; i < 2; i++) step();
    return { value: 0, unit: 'tok/s', profile: await profiled(step) };
  }
  for (let i = 0; i < steps + 2; i++) {
    if (i === 2) {
      k.memory.resetPeak();
      k.cuda.resetPeakMemoryStats();
    }
    const t0 = performance.now();
    accumulateGradients(m, [batch], { autocast: 'bfloat16' });
    opt.step();
    opt.zeroGrad();
    k.cuda.synchronize();
    if (i >= 2) times.push(performance.now() - t0);
  }
  const stepMs = median(times);
  return {
    value: (B * T) / (stepMs / 1e3), unit: 'tok/s', stepMs,
    peakGiB: gib(k.memory.stats('cuda').peak.total), reservedGiB: gib(k.cuda.memoryStats().peakReserved),
  };
}

async function runDecode(w: Workload): Promise<Result> {
  const m = model(w.shape!).to('bfloat16');
  m.eval();
  const prompt = k.randint(0, dims(w.shape!).vocab_size, [1, 32], { backend: 'cuda' });
  await k.generate(m, prompt, { maxNewTokens: 8, temperature: 0, eosTokenId: [] });
  if (PROFILE) {
    // per-kernel times need the step-by-step path (a graph replay is one launch)
    process.env.KESTREL_CUDA_GRAPHS = '0';
    const profile = await profiled(() => k.generate(m, prompt, { maxNewTokens: 16, temperature: 0, eosTokenId: [] }));
    return { value: 0, unit: 'tok/s', profile };
  }
  const n = SMOKE ? 8 : 128;
  const t0 = performance.now();
  const out = await k.generate(m, prompt, { maxNewTokens: n, temperature: 0, eosTokenId: [] });
  const s = (performance.now() - t0) / 1e3;
  return { value: (out.shape[1] - 32) / s, unit: 'tok/s' };
}

/** 8 greedy jobs (32-token prompts) submitted at once to the serving engine: generated tokens per second in all. */
async function runServe(w: Workload): Promise<Result> {
  const m = model(w.shape!).to('bfloat16');
  m.eval();
  const engine = new BatchingEngine({ maxQueue: 64, kvCacheMb: SMOKE ? 4 : 1024, blockSize: 16, prefillChunk: 256, maxBatch: 64 });
  const vocab = dims(w.shape!).vocab_size;
  const run = async (streams: number, tokens: number): Promise<number> => {
    const jobs = Array.from({ length: streams }, (_, i) => {
      const rows = k.randint(0, vocab, [1, 32], { generator: new k.Generator(i + 1), backend: 'cpu' }).toArray() as number[][];
      return engine.submit({ model: m, adapter: null, rows, options: { maxNewTokens: tokens, temperature: 0, eosTokenId: [] }, topLogprobs: null, signal: new AbortController().signal });
    });
    let n = 0;
    await Promise.all(jobs.map(async (steps) => { for await (const s of steps) n += s.tokens.length; }));
    return n;
  };
  await run(w.batch!, 8); // the pool, kernels and scratch of both step kinds
  if (PROFILE) return { value: 0, unit: 'tok/s', profile: await profiled(() => run(w.batch!, 16)) };
  const t0 = performance.now();
  const n = await run(w.batch!, SMOKE ? 8 : 128);
  return { value: n / ((performance.now() - t0) / 1e3), unit: 'tok/s' };
}

/**
 * 1 GiB of float32 from a JS array to the GPU (k.tensor: one upload, through the pinned staging
 * buffers) and back (toTypedArray: one download into a new array): GB/s of each way.
 */
function runCopy(): Result {
  const mib = SMOKE ? 16 : 1024;
  const values = k.rand([mib << 18], { backend: 'cpu' }).toTypedArray() as Float32Array;
  const up: number[] = [], down: number[] = [];
  for (let r = 0; r < 6; r++) {
    let t0 = performance.now();
    const dev = k.tensor(values, { backend: 'cuda' });
    k.cuda.synchronize();
    up.push(performance.now() - t0);
    t0 = performance.now();
    const back = dev.toTypedArray() as Float32Array;
    down.push(performance.now() - t0);
    if (r === 0 && !back.every((v, i) => v === values[i])) throw new Error('copy: the round trip changed the values');
    dev.dispose();
  }
  const gbs = (ms: number): number => (mib << 20) / (ms / 1e3) / 1e9;
  return { value: gbs(median(up.slice(1))), unit: 'GB/s', downGBs: gbs(median(down.slice(1))), stagedCopies: k.cuda.memoryStats().stagedCopies };
}

async function worker(name: string, steps: number): Promise<Result> {
  k.setDefaultBackend('cuda');
  const w = WORKLOADS.find((x) => x.name === name)!;
  if (w.mode === 'gemm') return runGemm();
  if (w.mode === 'copy') return runCopy();
  if (w.mode === 'decode') return runDecode(w);
  if (w.mode === 'serve') return runServe(w);
  return runTrain(w, steps);
}

function spawnJson(cmd: string, args: string[], timeoutMs: number): { out: Record<string, unknown> | null; err: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20, env: process.env });
  const last = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  try {
    if (r.status === 0) return { out: JSON.parse(last) as Record<string, unknown>, err: '' };
  } catch {
    /* fall through */
  }
  return { out: null, err: (r.error?.message ?? (r.stderr || '').trim().split('\n').slice(-4).join(' | ')) || `exit ${r.status}` };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    only: { type: 'string' }, steps: { type: 'string', default: '4' }, 'no-peer': { type: 'boolean', default: false }, worker: { type: 'string' },
    smoke: { type: 'boolean', default: false }, profile: { type: 'boolean', default: false },
    seconds: { type: 'string' },
  } });
  const steps = Number(values.steps);
  if (values.worker) {
    process.stdout.write(JSON.stringify(await worker(values.worker, steps)) + '\n');
    return;
  }
  const self = fileURLToPath(import.meta.url);
  const peer = join(self, '..', 'torch_peer.py');
  const chosen = values.only ? WORKLOADS.filter((w) => values.only!.split(',').includes(w.name)) : WORKLOADS;
  const rows: Record<string, unknown>[] = [];
  // a time budget for the whole run (run.sh's): later workloads are skipped, and the table still printed
  const deadline = values.seconds ? performance.now() + Number(values.seconds) * 1e3 : Infinity;
  const left = (): number => Math.floor(Math.min(120_000, deadline - performance.now()));
  for (const w of chosen) {
    if (left() < 15_000) {
      rows.push({ workload: w.name, what: w.what, kestrel: { error: 'skipped: out of time' }, torch: { error: 'skipped' }, ratio: null, memoryRatio: null, issueFigure: w.issue, goal: w.goal });
      continue;
    }
    const ours = spawnJson(process.execPath, ['--import', 'tsx', self, '--worker', w.name, '--steps', String(steps), ...(SMOKE ? ['--smoke'] : []), ...(PROFILE ? ['--profile'] : [])], left());
    if (PROFILE) {
      rows.push({ workload: w.name, what: w.what, profile: (ours.out as Result | null)?.profile ?? { error: ours.err } });
      continue;
    }
    // the serving workload's peer is HF generate on the whole batch at once
    const mode = w.mode === 'serve' ? 'decode' : w.mode;
    const args = w.mode === 'gemm' || w.mode === 'copy' ? ['--mode', w.mode, ...(SMOKE ? ['--mib', '16'] : [])] : ['--shape', w.shape!, '--mode', mode, '--batch', String(w.batch ?? 1), '--seq', String(w.seq ?? 1), '--steps', String(steps)];
    const torch = values['no-peer'] ? { out: null, err: 'not run (--no-peer)' } : left() < 10_000 ? { out: null, err: 'skipped: out of time' } : spawnJson('python3', [peer, ...args], left());
    const kv = ours.out as Result | null;
    const tv = torch.out;
    const peerValue = tv ? Number(w.mode === 'gemm' ? tv.tflops : w.mode === 'copy' ? tv.gb_s : tv.tokens_per_s) : null;
    const row = {
      workload: w.name, what: w.what, kestrel: kv ?? { error: ours.err }, torch: tv ?? { error: torch.err },
      ratio: kv && peerValue ? kv.value / peerValue : null,
      memoryRatio: kv?.peakGiB && tv?.peak_gib ? kv.peakGiB / Number(tv.peak_gib) : null,
      issueFigure: w.issue, goal: w.goal,
    };
    rows.push(row);
    process.stderr.write(`${w.name}: ${JSON.stringify(row)}\n`);
  }
  if (PROFILE) {
    console.log(`wrote ${writeResult(SMOKE ? 'gpu-profile-smoke' : 'gpu-profile', { gpu: k.cuda.isAvailable() ? k.cuda.deviceName() : 'none', rows })}`);
    for (const r of rows) {
      const prof = r.profile as { name: string; calls: number; ms: number }[] | { error: string };
      if (!Array.isArray(prof)) { console.log(`${r.workload}: ${prof.error}`); continue; }
      const total = prof.reduce((s, x) => s + x.ms, 0);
      console.log(`${r.workload}: ${total.toFixed(1)} ms of device time in ${prof.reduce((s, x) => s + x.calls, 0)} launches; top:`);
      for (const x of prof.slice(0, 12)) console.log(`  ${x.name.padEnd(40)} ${String(x.calls).padStart(6)} calls ${x.ms.toFixed(2).padStart(10)} ms ${(100 * x.ms / total).toFixed(1).padStart(5)}%`);
    }
    return;
  }
  const path = writeResult(SMOKE ? 'gpu-bench-smoke' : 'gpu-bench', { gpu: k.cuda.isAvailable() ? k.cuda.deviceName() : 'none', steps, rows });
  const f = (x: number | null | undefined, d = 0): string => (x === null || x === undefined || Number.isNaN(x) ? '-' : x.toFixed(d));
  const lines = [
    '| workload | Kestrel | PyTorch (this run) | ratio | Kestrel / PyTorch memory | goal |',
    '|---|---|---|---|---|---|',
    ...rows.map((r) => {
      const kv = r.kestrel as Result & { error?: string };
      const tv = r.torch as Record<string, number> & { error?: string };
      const unit = kv.unit ?? (r.workload === 'gemm' ? 'TFLOP/s' : 'tok/s');
      const ours = kv.error ? `error: ${kv.error.slice(0, 80)}` : `${f(kv.value, 1)} ${unit}${kv.peakGiB ? `, ${f(kv.peakGiB, 1)} GiB` : ''}`;
      const theirs = tv.error ? `error: ${String(tv.error).slice(0, 80)}` : `${f(r.workload === 'gemm' ? tv.tflops : r.workload === 'copy' ? tv.gb_s : tv.tokens_per_s, 1)} ${unit}${tv.peak_gib ? `, ${f(tv.peak_gib, 1)} GiB` : ''}`;
      return `| ${r.what} | ${ours} | ${theirs} | ${f(r.ratio as number, 2)}x | ${f(r.memoryRatio as number, 2)} | ${r.goal} |`;
    }),
  ];
  console.log(lines.join('\n'));
  console.log(`wrote ${path}`);
}

await main();
