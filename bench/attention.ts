// Attention benchmark: the fused tiled kernel (k.scaledDotProductAttention, native/attention.cc)
// against the composite of separate ops (k.attentionComposite: matmul, scale, mask, softmax, matmul,
// which materialises the [B, H, T, T] scores), forward + backward on the cpu backend, causal,
// B=1 H=8 Hkv=2 hd=64 at seq 256 / 1024 / 2048. The fused path is validated against the composite
// at a small size before anything is timed; runs alternate between the two paths so that drift on
// this shared machine hits both alike; times are medians after warmup; peak memory comes from
// k.memory (bytes above the live inputs). Writes bench/results/attention.json.
// Run: node --import tsx bench/attention.ts [--seqs 256,1024] [--runs 5]
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k from '../src/index.js';
import { commitHash, cpuModel } from './lib/report.js';
import { loadNative, nativeLoadError } from '../src/backend/addon.js';

export interface AttentionBenchConfig {
  B: number;
  H: number;
  Hkv: number;
  hd: number;
  causal: boolean;
  seqs: number[];
  /** timed runs per path and length (after one warmup run each) */
  runs: (T: number) => number;
}

export interface PathResult {
  medianMs: number;
  runsMs: number[];
  /** peak bytes held above the live inputs during one forward + backward */
  peakBytes: number;
  /** useful FLOP/s: the 7 [T, T] x hd products of forward + backward, halved by causality */
  gflops: number;
}

export interface AttentionBenchRow {
  T: number;
  fused: PathResult;
  composite: PathResult | null;
  compositeError?: string;
  /** composite time / fused time */
  speedup: number | null;
  /** composite peak / fused peak */
  memoryRatio: number | null;
}

export const DEFAULT_CONFIG: AttentionBenchConfig = {
  B: 1, H: 8, Hkv: 2, hd: 64, causal: true, seqs: [256, 1024, 2048],
  runs: (T) => (T <= 256 ? 9 : T <= 1024 ? 5 : 3),
};

type Attn = typeof k.scaledDotProductAttention;
const here = dirname(fileURLToPath(import.meta.url));

/** Seeded float32 data in [-1, 1) (xorshift), independent of the library's RNG. */
function data(n: number, seed: number): Float32Array {
  let x = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out[i] = (x / 4294967296) * 2 - 1;
  }
  return out;
}

interface Inputs {
  q: k.Tensor;
  k: k.Tensor;
  v: k.Tensor;
  g: k.Tensor;
  dispose(): void;
}

function inputs(c: AttentionBenchConfig, T: number): Inputs {
  const leaf = (shape: number[], seed: number, grad: boolean) =>
    k.tensor(data(shape.reduce((a, b) => a * b, 1), seed), { shape, backend: 'cpu', requiresGrad: grad });
  const t = {
    q: leaf([c.B, c.H, T, c.hd], 1, true),
    k: leaf([c.B, c.Hkv, T, c.hd], 2, true),
    v: leaf([c.B, c.Hkv, T, c.hd], 3, true),
    g: leaf([c.B, c.H, T, c.hd], 4, false),
  };
  return {
    ...t,
    dispose() {
      for (const x of [t.q, t.k, t.v, t.g]) {
        x.zeroGrad();
        x.dispose();
      }
    },
  };
}

/** One forward + backward; returns ms. Gradients are dropped afterwards. */
function step(f: Attn, x: Inputs, causal: boolean): number {
  const t0 = performance.now();
  k.tidy(() => f(x.q, x.k, x.v, { causal }).backward(x.g));
  const ms = performance.now() - t0;
  for (const t of [x.q, x.k, x.v]) t.zeroGrad();
  return ms;
}

function peak(f: Attn, x: Inputs, causal: boolean): number {
  const base = k.memory.stats().current.total;
  k.memory.resetPeak();
  step(f, x, causal);
  return k.memory.stats().peak.total - base;
}

/** Fused and composite agree (output and q/k/v gradients) at a small size: rtol 1e-4, atol 1e-5. */
export function validate(c: AttentionBenchConfig, T = 64): void {
  const x = inputs(c, T);
  const run = (f: Attn) =>
    k.tidy(() => {
      const out = f(x.q, x.k, x.v, { causal: c.causal });
      out.backward(x.g);
      const res = [out, x.q.grad!, x.k.grad!, x.v.grad!].map((t) => t.toFloat32Array());
      for (const t of [x.q, x.k, x.v]) t.zeroGrad();
      return res;
    });
  const a = run(k.scaledDotProductAttention);
  const b = run(k.attentionComposite);
  x.dispose();
  ['out', 'dq', 'dk', 'dv'].forEach((what, i) => {
    let worst = 0;
    for (let j = 0; j < a[i].length; j++) {
      const err = Math.abs(a[i][j] - b[i][j]) - (1e-5 + 1e-4 * Math.abs(b[i][j]));
      if (!(err <= worst)) worst = err;
    }
    if (worst > 0 || Number.isNaN(worst)) throw new Error(`attention bench: fused ${what} differs from the composite at T=${T} (excess error ${worst})`);
  });
}

const median = (xs: number[]): number => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)];

function pathResult(runs: number[], peakBytes: number, flops: number): PathResult {
  const m = median(runs);
  return { medianMs: m, runsMs: runs, peakBytes, gflops: flops / (m * 1e6) };
}

export async function benchAttention(c: AttentionBenchConfig = DEFAULT_CONFIG): Promise<AttentionBenchRow[]> {
  if (!loadNative()) throw new Error(`attention bench: native addon not built: ${nativeLoadError()}`);
  validate(c);
  const rows: AttentionBenchRow[] = [];
  for (const T of c.seqs) {
    const x = inputs(c, T);
    const flops = 7 * 2 * c.B * c.H * T * T * c.hd * (c.causal ? 0.5 : 1);
    const fusedRuns: number[] = [];
    const compRuns: number[] = [];
    let compositeError: string | undefined;
    step(k.scaledDotProductAttention, x, c.causal); // warmup
    try {
      step(k.attentionComposite, x, c.causal);
    } catch (e) {
      compositeError = (e as Error).message;
    }
    for (let r = 0; r < c.runs(T); r++) {
      fusedRuns.push(step(k.scaledDotProductAttention, x, c.causal));
      if (!compositeError) compRuns.push(step(k.attentionComposite, x, c.causal));
    }
    const fused = pathResult(fusedRuns, peak(k.scaledDotProductAttention, x, c.causal), flops);
    const composite = compositeError ? null : pathResult(compRuns, peak(k.attentionComposite, x, c.causal), flops);
    x.dispose();
    rows.push({
      T, fused, composite, compositeError,
      speedup: composite ? composite.medianMs / fused.medianMs : null,
      memoryRatio: composite ? composite.peakBytes / fused.peakBytes : null,
    });
    await new Promise((r) => setTimeout(r, 10));
  }
  return rows;
}

const mb = (b: number): string => (b / 2 ** 20).toFixed(1);

export function table(rows: AttentionBenchRow[]): string {
  const head = ['seq', 'fused ms', 'GFLOP/s', 'peak MB', 'composite ms', 'peak MB', 'speedup', 'memory ratio'];
  const cells = rows.map((r) => [
    String(r.T), r.fused.medianMs.toFixed(1), r.fused.gflops.toFixed(0), mb(r.fused.peakBytes),
    r.composite ? r.composite.medianMs.toFixed(1) : 'n/a', r.composite ? mb(r.composite.peakBytes) : 'n/a',
    r.speedup ? `${r.speedup.toFixed(2)}x` : 'n/a', r.memoryRatio ? `${r.memoryRatio.toFixed(1)}x` : 'n/a',
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (cs: string[]) => cs.map((s, i) => s.padStart(w[i])).join('  ');
  return [line(head), ...cells.map(line)].join('\n');
}



async function main(): Promise<void> {
  const arg = (name: string) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const seqs = arg('--seqs')?.split(',').map(Number) ?? DEFAULT_CONFIG.seqs;
  const runs = arg('--runs');
  const config: AttentionBenchConfig = { ...DEFAULT_CONFIG, seqs, runs: runs ? () => Number(runs) : DEFAULT_CONFIG.runs };
  const rows = await benchAttention(config);
  const { B, H, Hkv, hd, causal } = config;
  console.log(`attention fwd+bwd, cpu backend, B=${B} H=${H} Hkv=${Hkv} hd=${hd} causal=${causal}, threads ${loadNative()!.info().threads}`);
  console.log(table(rows));
  for (const r of rows) if (r.compositeError) console.log(`seq ${r.T}: composite not run: ${r.compositeError}`);
  const out = {
    bench: 'attention', date: new Date().toISOString(), commit: commitHash(), machine: cpuModel(), cpu: loadNative()!.info(),
    config: { B, H, Hkv, hd, causal, seqs, dtype: 'float32', timing: 'median of alternating fused/composite runs after one warmup each' },
    results: rows,
  };
  const dir = join(here, 'results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'attention.json'), JSON.stringify(out, null, 2) + '\n');
  console.log(`wrote ${join(dir, 'attention.json')}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
