// bf16 GEMM benchmark: the native `matmul` kernel with bfloat16 operands (native/gemm_half.h) on
// each path this CPU has (KESTREL_BF16_GEMM=amx|avx512bf16|convert), against Kestrel's own float32
// SGEMM and PyTorch's bf16 torch.matmul (bench/peers/torch_matmul.py) in the same run, on the
// layer shapes of DESIGN.md's benchmark models (M = seq x batch tokens). Each path is validated
// against float64 dot products of the same bf16 values before it is timed; medians of several runs.
// Writes bench/results/bf16-gemm.json. Run: npm run bench:bf16 -- [--threads 2] [--shapes smol_up,...]
//   [--min-time 0.3] [--no-peer]
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BENCH_DIR, median, writeResult } from './lib/report.js';
import { loadNative, nativeLoadError, type NativeAddon } from '../src/backend/addon.js';
import { Packer, type NativeView } from '../src/backend/cpu/native.js';
import { bf16ToF32, f32ToBf16 } from '../src/tensor/half.js';

export interface GemmShape {
  name: string;
  M: number;
  K: number;
  N: number;
  /** A stored [K, M] and read transposed (a weight gradient's gᵀ). */
  transA: boolean;
  /** B stored [N, K] and read transposed (a Linear weight in the forward pass). */
  transB: boolean;
}

/** DESIGN.md's benchmark models: d_model, ffn, vocab and tokens per step (seq x batch). */
const MODELS = [
  { name: 'tiny', d: 128, ffn: 352, vocab: 512, tokens: 256 * 8 },
  { name: 'small', d: 512, ffn: 1376, vocab: 8000, tokens: 256 * 4 },
  { name: 'smol135m', d: 576, ffn: 1536, vocab: 49152, tokens: 256 },
  { name: 'qwen05b', d: 896, ffn: 4864, vocab: 151936, tokens: 256 },
];

const shape = (name: string, M: number, K: number, N: number, transA = false, transB = true): GemmShape => ({ name, M, K, N, transA, transB });

/** Per model: the MLP's up and down projections and the LM head (forward, weights [out, in]); for smol135m also the up projection's backward products. */
export const SHAPES: GemmShape[] = [
  ...MODELS.flatMap((m) => [
    shape(`${m.name}_up`, m.tokens, m.d, m.ffn),
    shape(`${m.name}_down`, m.tokens, m.ffn, m.d),
    shape(`${m.name}_lmhead`, m.tokens, m.d, m.vocab),
  ]),
  shape('smol135m_up_dx', 256, 1536, 576, false, false), // dx = g W: W [ffn, d] row-major
  shape('smol135m_up_dw', 1536, 256, 576, true, false), // dW = gᵀ x: g [tokens, ffn] read transposed
];

export const PATHS = ['amx', 'avx512bf16', 'convert'] as const;
type Path = (typeof PATHS)[number];
const flops = (s: GemmShape): number => 2 * s.M * s.N * s.K;

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 4294967296;
  };
}

interface Timing { medianMs: number; gflops: number; runs: number }

export interface Bf16Result {
  shape: GemmShape;
  threads: number;
  /** Kestrel's float32 SGEMM on the same values. */
  f32: Timing;
  /** Kestrel bf16 -> float32 out per forced path (absent: the CPU lacks it). */
  paths: Partial<Record<Path, Timing>>;
  /** The automatic choice with a bfloat16 out (what autocast's matmul writes). */
  autoBf16Out: Timing & { path: string };
  /** torch.matmul on bf16 tensors (PyTorch's CPU kernels, oneDNN). */
  torch?: Timing;
  /** best Kestrel bf16 path / Kestrel float32, and / torch bf16. */
  vsF32: number;
  vsTorch?: number;
}

/** The operands of one shape: bf16 A and B, float32 copies of the same values, outputs. */
function operands(addon: NativeAddon, s: GemmShape) {
  const r = rng(s.M * 31 + s.K * 7 + s.N);
  // filled in loops: TypedArray.from over a length-only object builds a JS array first (the LM
  // heads' 136M-element B overflows the heap that way)
  const fill = (n: number) => {
    const bits = new Uint16Array(n), f = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      bits[i] = f32ToBf16(2 * r() - 1);
      f[i] = bf16ToF32(bits[i]);
    }
    return [bits, f] as const;
  };
  const [bitsA, fa] = fill(s.M * s.K), [bitsB, fb] = fill(s.K * s.N);
  const handles: number[] = [];
  const put = (data: ArrayBufferView & { byteLength: number } | null, bytes: number) => {
    const h = addon.alloc(bytes, true);
    handles.push(h);
    if (data) addon.write(h, 0, data as Uint16Array | Float32Array);
    return h;
  };
  const v = (handle: number, dtype: NativeView['dtype'], sh: number[], st: number[]): NativeView => ({ handle, dtype, offset: 0, shape: sh, strides: st });
  // element (i, k) of A at i*ars + k*aks, element (k, j) of B at k*bks + j*bjs
  const [ars, aks] = s.transA ? [1, s.M] : [s.K, 1];
  const [bks, bjs] = s.transB ? [1, s.K] : [s.N, 1];
  const views = (ha: number, hb: number, dtype: NativeView['dtype']) => ({
    a: v(ha, dtype, [s.M, s.K], [ars, aks]), b: v(hb, dtype, [s.K, s.N], [bks, bjs]),
  });
  const half = views(put(bitsA, bitsA.byteLength), put(bitsB, bitsB.byteLength), 'bfloat16');
  const single = views(put(fa, fa.byteLength), put(fb, fb.byteLength), 'float32');
  const c32 = v(put(null, s.M * s.N * 4), 'float32', [s.M, s.N], [s.N, 1]);
  const c16 = v(put(null, s.M * s.N * 2), 'bfloat16', [s.M, s.N], [s.N, 1]);
  /** 64 sampled entries of a float32 (or bf16) C against float64 sums of the same values. */
  const validate = (c: NativeView, what: string): void => {
    const got = c.dtype === 'float32' ? new Float32Array(s.M * s.N) : new Uint16Array(s.M * s.N);
    addon.read(c.handle, 0, got);
    const q = rng(7);
    for (let t = 0; t < 64; t++) {
      const i = Math.floor(q() * s.M), j = Math.floor(q() * s.N);
      let ref = 0, mag = 0;
      for (let k = 0; k < s.K; k++) {
        const p = fa[i * ars + k * aks] * fb[k * bks + j * bjs];
        ref += p;
        mag += Math.abs(p);
      }
      const g = c.dtype === 'float32' ? got[i * s.N + j] : bf16ToF32(got[i * s.N + j]);
      const tol = 4 * (Math.sqrt(s.K) + 1) * 2 ** -24 * mag + (c.dtype === 'float32' ? 0 : Math.abs(ref) * 2 ** -8);
      if (!(Math.abs(g - ref) <= tol)) throw new Error(`bf16 bench: ${s.name} ${what} C[${i},${j}] = ${g}, float64 reference ${ref}`);
    }
  };
  return { half, single, c32, c16, validate, free: () => handles.forEach((h) => addon.free(h)) };
}

/** Median ms over >= 3 runs and about `minMs` of runs, after a validated warm-up call. */
function timeCall(call: () => void, validate: () => void, flop: number, minMs: number): Timing {
  call();
  validate();
  call();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < 3 || (performance.now() - start < minMs && times.length < 200)) {
    const t0 = performance.now();
    call();
    times.push(performance.now() - t0);
  }
  const med = median(times);
  return { medianMs: med, gflops: flop / med / 1e6, runs: times.length };
}

// ---------------------------------------------------------------- the torch peer

const PYTHON = '/usr/bin/python3';

/** A torch process answering one timing request per line (bench/peers/torch_matmul.py). */
class TorchPeer {
  private lines: string[] = [];
  private waiting: ((line: string) => void) | null = null;
  private exited = '';
  readonly hello: Promise<unknown>;
  private readonly proc: ChildProcessWithoutNullStreams;

  constructor() {
    this.proc = spawn(PYTHON, [join(BENCH_DIR, 'peers', 'torch_matmul.py')], { env: { ...process.env, OMP_WAIT_POLICY: 'PASSIVE' } });
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
      this.exited = `torch peer exited (${code}): ${err.trim().split('\n').pop() ?? ''}`;
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

  async time(threads: number, s: GemmShape, minTime: number): Promise<Timing> {
    if (s.transA) throw new Error('torch peer: transA shapes are timed as given by torch (a.t() views)');
    this.proc.stdin.write(JSON.stringify({ threads, shape: s, dtype: 'bfloat16', min_time: minTime }) + '\n');
    const r = JSON.parse(await this.next()) as { median_s: number; gflops: number; runs: number };
    return { medianMs: r.median_s * 1e3, gflops: r.gflops, runs: r.runs };
  }

  close(): void {
    this.proc.stdin.end();
  }
}

function torchMissing(): string | null {
  if (!existsSync(PYTHON)) return `${PYTHON} not found`;
  const r = spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' });
  return r.status === 0 ? null : 'torch not installed (apt-get install -y python3-torch)';
}

// ---------------------------------------------------------------- driver

export interface Bf16Options {
  threads: number[];
  shapes?: GemmShape[];
  peer?: boolean;
  /** Seconds of timed runs per measurement. */
  minTime?: number;
}

/**
 * Times every shape: float32 SGEMM, each bf16 path, the automatic path into a bf16 out, torch bf16.
 * @example const rows = await benchBf16({ threads: [2] });
 */
export async function benchBf16(opts: Bf16Options): Promise<{ results: Bf16Result[]; peer: { note: string; hello: unknown } }> {
  const addon = loadNative();
  if (!addon) throw new Error(`bf16 bench: native addon not built: ${nativeLoadError()}`);
  const info = addon.info();
  const available: Path[] = PATHS.filter((p) => p === 'convert' || (p === 'amx' ? info.amxBf16 : info.avx512bf16));
  const minMs = (opts.minTime ?? 0.3) * 1000;
  const missing = opts.peer === false ? 'not requested' : torchMissing();
  let torch = missing ? null : new TorchPeer();
  const peer = { note: missing ? `torch not run: ${missing}` : 'ok', hello: null as unknown };
  try {
    if (torch) peer.hello = await torch.hello;
  } catch (e) {
    peer.note = `torch failed to start: ${(e as Error).message}`;
    torch = null;
  }
  const pack = new Packer(addon);
  const mm = (a: NativeView, b: NativeView, c: NativeView) => () => pack.view(a).view(b).view(c).num(0).call('matmul');
  const before = info.threads, forced = process.env.KESTREL_BF16_GEMM;
  const results: Bf16Result[] = [];
  try {
    for (const threads of opts.threads) {
      addon.setThreads(threads);
      for (const s of opts.shapes ?? SHAPES) {
        const o = operands(addon, s);
        try {
          const f = flops(s);
          delete process.env.KESTREL_BF16_GEMM;
          const f32 = timeCall(mm(o.single.a, o.single.b, o.c32), () => o.validate(o.c32, 'float32'), f, minMs);
          const paths: Bf16Result['paths'] = {};
          for (const p of available) {
            process.env.KESTREL_BF16_GEMM = p; // read by the kernel on every call
            paths[p] = timeCall(mm(o.half.a, o.half.b, o.c32), () => o.validate(o.c32, p), f, minMs);
          }
          delete process.env.KESTREL_BF16_GEMM;
          const auto = timeCall(mm(o.half.a, o.half.b, o.c16), () => o.validate(o.c16, 'auto -> bf16'), f, minMs);
          const best = Math.max(...Object.values(paths).map((t) => t.gflops));
          const r: Bf16Result = { shape: s, threads, f32, paths, autoBf16Out: { ...auto, path: addon.info().bf16Gemm }, vsF32: best / f32.gflops };
          if (torch && !s.transA) {
            try {
              r.torch = await torch.time(threads, s, minMs / 1000);
              r.vsTorch = best / r.torch.gflops;
            } catch (e) {
              peer.note = `torch failed: ${(e as Error).message}`;
              torch.close();
              torch = null;
            }
          }
          results.push(r);
          console.error(`${s.name} done`);
        } finally {
          o.free();
        }
      }
    }
  } finally {
    if (forced === undefined) delete process.env.KESTREL_BF16_GEMM;
    else process.env.KESTREL_BF16_GEMM = forced;
    addon.setThreads(before);
    torch?.close();
  }
  return { results, peer };
}

function table(results: Bf16Result[]): string {
  const f = (t: Timing | undefined) => (t ? t.gflops.toFixed(0) : '-');
  const head = ['shape', 'M x K x N', 'thr', 'f32 GF/s', ...PATHS.map((p) => `${p} GF/s`), 'auto->bf16', 'torch bf16', 'best/f32', 'best/torch'];
  const rows = results.map((r) => [
    r.shape.name, `${r.shape.M}x${r.shape.K}x${r.shape.N}${r.shape.transA ? ' aT' : ''}${r.shape.transB ? ' bT' : ''}`, String(r.threads),
    f(r.f32), ...PATHS.map((p) => f(r.paths[p])), f(r.autoBf16Out), f(r.torch), `${r.vsF32.toFixed(2)}x`,
    r.vsTorch === undefined ? '-' : `${r.vsTorch.toFixed(2)}x`,
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i < 2 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [line(head), ...rows.map(line)].join('\n');
}

async function main(): Promise<void> {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const threads = (arg('--threads') ?? '2').split(',').map(Number);
  const only = arg('--shapes')?.split(',');
  const shapes = only ? SHAPES.filter((s) => only.includes(s.name)) : SHAPES;
  const minTime = Number(arg('--min-time') ?? 0.3);
  const { results, peer } = await benchBf16({ threads, shapes, minTime, peer: !process.argv.includes('--no-peer') });
  console.log(table(results));
  if (peer.note !== 'ok') console.log(`${peer.note}; Kestrel figures only.`);
  const path = writeResult('bf16-gemm', { bench: 'bf16-gemm', cpuInfo: loadNative()!.info(), threads, minTime, peer, results });
  console.log(`wrote ${path}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
