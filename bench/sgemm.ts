// SGEMM benchmark: the native `matmul` kernel (native/gemm.cc) on square and LLM-layer shapes,
// on 1 and 2 threads, side by side with OpenBLAS through numpy (bench/peers/numpy_sgemm.py).
// Each shape is validated against float64 dot products before it is timed (llm.c's rule), then
// warmed up and timed as the median of several runs. Writes bench/results/sgemm.json.
// Run: node --import tsx bench/sgemm.ts [--threads 1,2] [--shapes sq512,smol_up] [--rounds 2] [--no-peer]
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { commitHash, cpuModel, peerCoretype } from './lib/report.js';
import { loadNative, nativeLoadError, type NativeAddon } from '../src/backend/addon.js';
import { Packer, type NativeView } from '../src/backend/cpu/native.js';

export interface SgemmShape {
  name: string;
  M: number;
  K: number;
  N: number;
  /** B stored [N, K] and passed as a transposed view (how a Linear weight is used). */
  transB: boolean;
}

export interface SgemmResult {
  shape: SgemmShape;
  threads: number;
  kestrel: { medianMs: number; gflops: number; runs: number };
  /** OpenBLAS through numpy with its own core-type detection (OPENBLAS_CORETYPE unset). */
  numpy?: { medianMs: number; gflops: number };
  /** OpenBLAS with the core type forced to the best one this CPU runs (see peerCoretype). */
  numpyForced?: { medianMs: number; gflops: number };
  /** kestrel / best numpy figure. */
  ratio?: number;
  /** Some measurement of this row ran while other jobs kept the CPUs busy. */
  contended?: boolean;
}

const sq = (n: number): SgemmShape => ({ name: `sq${n}`, M: n, K: n, N: n, transB: false });
const llm = (name: string, M: number, K: number, N: number, transB = false): SgemmShape => ({ name, M, K, N, transB });

/** Square sizes and the smol135m / qwen05b layer shapes (M = 256 tokens; M x K x N). */
export const SHAPES: SgemmShape[] = [
  sq(256), sq(512), sq(1024), sq(2048), sq(4096),
  llm('smol_up', 256, 576, 1536), llm('smol_down', 256, 1536, 576), llm('smol_lmhead', 256, 576, 49152),
  llm('qwen_up', 256, 896, 4864), llm('qwen_down', 256, 4864, 896), llm('smol_decode', 1, 576, 1536),
  // The same layers with the weight stored [N, K] (nn.Linear layout, a transposed view here).
  llm('smol_up_bT', 256, 576, 1536, true), llm('smol_lmhead_bT', 256, 576, 49152, true),
  llm('qwen_down_bT', 256, 4864, 896, true), llm('smol_decode_bT', 1, 576, 1536, true),
];

const here = dirname(fileURLToPath(import.meta.url));
const flops = (s: SgemmShape): number => 2 * s.M * s.N * s.K;

function rng(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 4294967296;
  };
}

interface Operands { a: NativeView; b: NativeView; c: NativeView; ha: Float32Array; hb: Float32Array; free(): void }

function operands(addon: NativeAddon, s: SgemmShape): Operands {
  const r = rng(s.M * 31 + s.K * 7 + s.N);
  const ha = Float32Array.from({ length: s.M * s.K }, () => 2 * r() - 1);
  const hb = Float32Array.from({ length: s.K * s.N }, () => 2 * r() - 1);
  const handles = [ha, hb, null].map((h) => {
    const bytes = h ? h.byteLength : s.M * s.N * 4;
    const handle = addon.alloc(bytes, true);
    if (h) addon.write(handle, 0, h);
    return handle;
  });
  const view = (handle: number, shape: number[], strides: number[]): NativeView => ({ handle, dtype: 'float32', offset: 0, shape, strides });
  return {
    a: view(handles[0], [s.M, s.K], [s.K, 1]),
    // transB: hb holds B^T as [N, K] row-major; the view presents it as [K, N] with strides (1, K).
    b: s.transB ? view(handles[1], [s.K, s.N], [1, s.K]) : view(handles[1], [s.K, s.N], [s.N, 1]),
    c: view(handles[2], [s.M, s.N], [s.N, 1]),
    ha, hb,
    free: () => handles.forEach((h) => addon.free(h)),
  };
}

/** Checks 64 sampled entries of C against float64 dot products (tolerance as in the tests). */
function validate(addon: NativeAddon, s: SgemmShape, o: Operands): void {
  const c = new Float32Array(s.M * s.N);
  addon.read(o.c.handle, 0, c);
  const r = rng(7);
  for (let t = 0; t < 64; t++) {
    const i = Math.floor(r() * s.M), j = Math.floor(r() * s.N);
    let ref = 0, mag = 0;
    for (let k = 0; k < s.K; k++) {
      const p = o.ha[i * s.K + k] * (s.transB ? o.hb[j * s.K + k] : o.hb[k * s.N + j]);
      ref += p;
      mag += Math.abs(p);
    }
    const tol = 4 * (Math.sqrt(s.K) + 1) * 2 ** -24 * mag;
    if (!(Math.abs(c[i * s.N + j] - ref) <= tol))
      throw new Error(`sgemm bench: ${s.name} C[${i},${j}] = ${c[i * s.N + j]}, float64 reference ${ref}`);
  }
}

function median(xs: number[]): number {
  const v = [...xs].sort((x, y) => x - y);
  return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

/** Median ms over >= 5 runs and about `minMs` of runs, after validation and a warm-up. */
function timeKestrel(addon: NativeAddon, s: SgemmShape, minMs: number): SgemmResult['kestrel'] {
  const pack = new Packer(addon);
  const o = operands(addon, s);
  try {
    const call = () => pack.view(o.a).view(o.b).view(o.c).num(0).call('matmul');
    call();
    validate(addon, s, o);
    call();
    const times: number[] = [];
    const start = performance.now();
    while (times.length < 5 || (performance.now() - start < minMs && times.length < 200)) {
      const t0 = performance.now();
      call();
      times.push(performance.now() - t0);
    }
    const med = median(times);
    return { medianMs: med, gflops: flops(s) / med / 1e6, runs: times.length };
  } finally {
    o.free();
  }
}

// ---------------------------------------------------------------- the peer

const PYTHON = '/usr/bin/python3';
type PeerTiming = { median_s: number; gflops: number; runs: number };

/** A numpy process answering one timing request per line (see bench/peers/numpy_sgemm.py). */
class Peer {
  private lines: string[] = [];
  private waiting: ((line: string) => void) | null = null;
  private exited = '';
  readonly hello: Promise<unknown>;
  private readonly proc: ChildProcessWithoutNullStreams;

  constructor(coretype?: string) {
    const env = { ...process.env };
    delete env.OPENBLAS_CORETYPE; // let OpenBLAS detect the CPU, as the design notes ask
    delete env.OPENBLAS_L2_SIZE;
    if (coretype) env.OPENBLAS_CORETYPE = coretype;
    this.proc = spawn(PYTHON, [join(here, 'peers', 'numpy_sgemm.py')], { env });
    let buf = '', err = '';
    this.proc.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        this.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
    this.proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
    this.proc.on('exit', (code) => {
      this.exited = `numpy peer exited (${code}): ${err.trim().split('\n').pop() ?? ''}`;
      this.push('');
    });
    this.hello = this.next().then((l) => JSON.parse(l));
  }

  private push(line: string): void {
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w(line);
    } else this.lines.push(line);
  }

  private next(): Promise<string> {
    if (this.lines.length) return Promise.resolve(this.lines.shift()!);
    if (this.exited) return Promise.reject(new Error(this.exited));
    return new Promise((res, rej) => {
      this.waiting = (l) => (l || !this.exited ? res(l) : rej(new Error(this.exited)));
    });
  }

  async time(threads: number, shape: SgemmShape, minTime: number): Promise<PeerTiming> {
    this.proc.stdin.write(JSON.stringify({ threads, shape, min_time: minTime }) + '\n');
    return JSON.parse(await this.next()) as PeerTiming;
  }

  close(): void {
    this.proc.stdin.end();
  }
}

function peerMissing(): string | null {
  if (!existsSync(PYTHON)) return `${PYTHON} not found`;
  const r = spawnSync(PYTHON, ['-c', 'import numpy, threadpoolctl'], { encoding: 'utf8' });
  return r.status === 0 ? null : 'numpy/threadpoolctl not installed (apt-get install -y python3-numpy libopenblas0-pthread python3-threadpoolctl)';
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Idle fraction of all CPUs over `ms` (from /proc/stat; 1 where it cannot be read). */
async function idleFraction(ms: number): Promise<number> {
  const read = () => {
    try {
      const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
      return { idle: f[3] + f[4], total: f.slice(0, 8).reduce((x, y) => x + y, 0) };
    } catch {
      return null;
    }
  };
  const a = read();
  await sleep(ms);
  const b = read();
  return a && b && b.total > a.total ? (b.idle - a.idle) / (b.total - a.total) : 1;
}

/**
 * This machine is shared: other jobs come and go and halve a 2-thread figure while they run.
 * Before each measurement wait (up to `maxMs`) for the CPUs to be idle, so both sides of a
 * ratio are timed on a quiet machine; returns false when it never got quiet.
 */
async function waitForQuiet(maxMs: number): Promise<boolean> {
  const start = performance.now();
  while (performance.now() - start < maxMs) if ((await idleFraction(250)) >= 0.9) return true;
  return false;
}

// ---------------------------------------------------------------- driver

export interface SgemmOptions {
  threads: number[];
  shapes?: SgemmShape[];
  /** false: Kestrel only. */
  peer?: boolean;
  /** Seconds of timed runs per measurement (at least 5 runs for Kestrel, 3 for numpy). */
  minTime?: number;
  /** Interleaved rounds (Kestrel, numpy, numpy forced); each reports its best round's median. */
  rounds?: number;
  /** Longest wait for an idle machine before each measurement (ms). */
  quietMs?: number;
}

/**
 * Times every shape on every thread count, interleaving Kestrel and the numpy peers shape by
 * shape so that drift on this shared machine hits both sides alike.
 * @example const rows = await benchSgemm({ threads: [1, 2] });
 */
export async function benchSgemm(opts: SgemmOptions): Promise<SgemmResult[]> {
  const addon = loadNative();
  if (!addon) throw new Error(`sgemm bench: native addon not built: ${nativeLoadError()}`);
  const shapes = opts.shapes ?? SHAPES, minTime = opts.minTime ?? 0.5, rounds = opts.rounds ?? 2;
  const coretype = peerCoretype();
  const missing = opts.peer === false ? 'not requested' : peerMissing();
  let peers = missing ? null : [new Peer(), new Peer(coretype)];
  lastPeer = { note: missing ? `peer not run: ${missing}` : 'ok', auto: null, forced: null, coretype };
  const before = addon.info().threads;
  const results: SgemmResult[] = [];
  try {
    if (peers) [lastPeer.auto, lastPeer.forced] = await Promise.all(peers.map((p) => p.hello));
  } catch (e) {
    lastPeer.note = `peer failed to start: ${(e as Error).message}`;
    peers?.forEach((p) => p.close());
    peers = null;
  }
  try {
    for (const threads of opts.threads) {
      addon.setThreads(threads);
      for (const shape of shapes) {
        const r: SgemmResult = { shape, threads, kestrel: { medianMs: Infinity, gflops: 0, runs: 0 }, contended: false };
        const best = <T extends { gflops: number }>(old: T | undefined, t: T): T => (!old || t.gflops > old.gflops ? t : old);
        for (let round = 0; round < rounds; round++) {
          if (!(await waitForQuiet(opts.quietMs ?? 20_000))) r.contended = true;
          r.kestrel = best(r.kestrel, timeKestrel(addon, shape, minTime * 1000));
          if (!peers) continue;
          try {
            if (!(await waitForQuiet(opts.quietMs ?? 20_000))) r.contended = true;
            const a = await peers[0].time(threads, shape, minTime);
            if (!(await waitForQuiet(opts.quietMs ?? 20_000))) r.contended = true;
            const f = await peers[1].time(threads, shape, minTime);
            r.numpy = best(r.numpy, { medianMs: a.median_s * 1e3, gflops: a.gflops });
            r.numpyForced = best(r.numpyForced, { medianMs: f.median_s * 1e3, gflops: f.gflops });
          } catch (e) {
            lastPeer.note = `peer failed: ${(e as Error).message}`;
            peers.forEach((p) => p.close());
            peers = null;
          }
        }
        if (r.numpy && r.numpyForced) r.ratio = r.kestrel.gflops / Math.max(r.numpy.gflops, r.numpyForced.gflops);
        results.push(r);
      }
    }
  } finally {
    addon.setThreads(before);
    peers?.forEach((p) => p.close());
  }
  return results;
}

let lastPeer: { note: string; auto: unknown; forced: unknown; coretype: string } = { note: 'not run', auto: null, forced: null, coretype: '' };

function table(results: SgemmResult[]): string {
  const f = (x: number | undefined, d = 1) => (x === undefined ? '-' : x.toFixed(d));
  const head = ['shape', 'M x K x N', 'thr', 'kestrel GF/s', 'numpy GF/s', `numpy ${lastPeer.coretype} GF/s`, 'kestrel/best'];
  const rows = results.map((r) => [
    r.shape.name, `${r.shape.M}x${r.shape.K}x${r.shape.N}`, String(r.threads), f(r.kestrel.gflops), f(r.numpy?.gflops),
    f(r.numpyForced?.gflops), (r.ratio === undefined ? '-' : `${(100 * r.ratio).toFixed(0)}%`) + (r.contended ? ' *' : ''),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [line(head), ...rows.map(line)].join('\n');
}



async function main(): Promise<void> {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const threads = (arg('--threads') ?? '1,2').split(',').map(Number);
  const only = arg('--shapes')?.split(',');
  const shapes = only ? SHAPES.filter((s) => only.includes(s.name)) : SHAPES;
  const rounds = Number(arg('--rounds') ?? 2), minTime = Number(arg('--min-time') ?? 0.5);
  const results = await benchSgemm({ threads, shapes, rounds, minTime, peer: !process.argv.includes('--no-peer') });
  console.log(table(results));
  if (lastPeer.note !== 'ok') console.log(`numpy: ${lastPeer.note}; Kestrel figures only.`);
  if (results.some((r) => r.contended)) console.log('* measured while other jobs kept the CPUs busy (never idle for 20 s)');
  const info = loadNative()!.info();
  const out = {
    bench: 'sgemm', date: new Date().toISOString(), commit: commitHash(), machine: cpuModel(), cpu: info, threads,
    shapes, peer: lastPeer, results,
  };
  const dir = join(here, 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'sgemm.json'), JSON.stringify(out, null, 2) + '\n');
  console.log(`wrote ${join(dir, 'sgemm.json')}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
