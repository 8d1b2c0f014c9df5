// Block-sparse attention benchmark (issue 14): k.blockSparseAttention (native/block_sparse_attention.cc)
// against Kestrel's dense flash attention (k.scaledDotProductAttention, native/attention.cc) on a
// smol135m-shaped layer (9 heads, 3 kv heads, hd 64, batch 1), bidirectional, at 4k and 16k tokens,
// with BSLongformer layouts (a sliding window of blocks + global block 0, block 64) of at most 10% and
// 25% density. Forward and forward+backward times (medians; one run at 16k) and peak memory above
// the inputs (k.memory). The sparse op is first checked against dense attention with the layout's
// element mask. Writes bench/results/sparse_attention.json.
// Run: npm run bench:sparse [-- --seqs 4096,16384 --runs 3]
import { loadavg } from 'node:os';
import * as k from '../src/index.js';
import { loadNative, nativeLoadError } from '../src/backend/addon.js';
import { median, writeResult } from './lib/report.js';

const SHAPE = { B: 1, H: 9, Hkv: 3, hd: 64, block: 64 };
const DENSITIES = [0.1, 0.25];

type Attend = (q: k.Tensor, kk: k.Tensor, v: k.Tensor) => k.Tensor;

interface Timing {
  forwardMs: number;
  stepMs: number;
  /** peak bytes above the live inputs during one forward + backward */
  peakBytes: number;
}

/** A bidirectional BSLongformer layout with the widest odd window whose density stays at or below `density`. */
function layoutNear(T: number, density: number): k.BlockLayout {
  const nb = Math.ceil(T / SHAPE.block);
  const make = (w: number): k.BlockLayout => k.makeLayout(
    k.parseSparsityConfig({ mode: 'bslongformer', block: SHAPE.block, num_sliding_window_blocks: w, global_block_indices: [0] }), 1, T);
  let best = make(1);
  for (let w = 3; w <= nb; w += 2) {
    const l = make(w);
    if (l.density() > density) break;
    best = l;
  }
  return best;
}

function leaves(T: number): k.Tensor[] {
  const { B, H, Hkv, hd } = SHAPE;
  const g = new k.Generator(7);
  return [[B, H, T, hd], [B, Hkv, T, hd], [B, Hkv, T, hd], [B, H, T, hd]].map((s, i) =>
    k.randn(s, { backend: 'cpu', generator: g }).requiresGrad_(i < 3));
}

function time(f: Attend, x: k.Tensor[], runs: number): Timing {
  const [q, kk, v, g] = x;
  const fwd: number[] = [];
  const step: number[] = [];
  let peakBytes = 0;
  for (let r = 0; r < runs; r++) {
    let t0 = performance.now();
    k.tidy(() => k.noGrad(() => f(q, kk, v)));
    fwd.push(performance.now() - t0);
    const base = k.memory.stats().current.total;
    k.memory.resetPeak();
    t0 = performance.now();
    k.tidy(() => f(q, kk, v).backward(g));
    step.push(performance.now() - t0);
    peakBytes = k.memory.stats().peak.total - base;
    for (const t of [q, kk, v]) t.zeroGrad();
  }
  return { forwardMs: median(fwd), stepMs: median(step), peakBytes };
}

/** The sparse op equals dense attention with the layout's element mask (out and grads) at T = 200 (a partial block). */
function validate(): void {
  const T = 200;
  const layout = layoutNear(T, 0.25);
  const x = leaves(T);
  const run = (f: Attend): Float32Array[] => k.tidy(() => {
    const out = f(x[0], x[1], x[2]);
    out.backward(x[3]);
    const res = [out, x[0].grad!, x[1].grad!, x[2].grad!].map((t) => t.toFloat32Array());
    for (const t of x.slice(0, 3)) t.zeroGrad();
    return res;
  });
  const a = run((q, kk, v) => k.blockSparseAttention(q, kk, v, layout));
  const b = run((q, kk, v) => k.scaledDotProductAttention(q, kk, v, { mask: k.blockSparseMask(layout, T, T, false, q) }));
  ['out', 'dq', 'dk', 'dv'].forEach((what, i) => {
    const bad = a[i].findIndex((y, j) => !(Math.abs(y - b[i][j]) <= 1e-4 + 1e-3 * Math.abs(b[i][j])));
    if (bad >= 0) throw new Error(`sparse attention bench: ${what}[${bad}] ${a[i][bad]} differs from masked dense ${b[i][bad]}`);
  });
  for (const t of x) t.dispose();
}

const ms = (x: number): string => x.toFixed(0).padStart(8);
const mb = (b: number): string => (b / 2 ** 20).toFixed(1).padStart(8);

async function main(): Promise<void> {
  if (!loadNative()) throw new Error(`sparse attention bench: native addon not built: ${nativeLoadError()}`);
  const arg = (name: string): string | undefined => {
    const i = process.argv.indexOf(name);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  const seqs = arg('--seqs')?.split(',').map(Number) ?? [4096, 16384];
  const runsFor = (T: number): number => Number(arg('--runs') ?? (T > 8192 ? 1 : 3));
  const loadAtStart = loadavg();
  validate();
  const rows: object[] = [];
  console.log(`block-sparse vs dense flash attention, bidirectional, B=${SHAPE.B} H=${SHAPE.H} Hkv=${SHAPE.Hkv} hd=${SHAPE.hd} block ${SHAPE.block}, threads ${loadNative()!.info().threads}`);
  console.log('     seq   layout  density  fwd ms  fwd+bwd ms  peak MB  fwd speedup  step speedup');
  for (const T of seqs) {
    const x = leaves(T);
    const runs = runsFor(T);
    const warm = leaves(256);
    time((q, kk, v) => k.blockSparseAttention(q, kk, v, layoutNear(256, 0.25)), warm, 1); // threads and code warm
    for (const t of warm) t.dispose();
    const dense = time((q, kk, v) => k.scaledDotProductAttention(q, kk, v), x, runs);
    console.log(`${String(T).padStart(8)}    dense    1.000${ms(dense.forwardMs)}    ${ms(dense.stepMs)}${mb(dense.peakBytes)}`);
    const sparse = DENSITIES.map((d) => {
      const layout = layoutNear(T, d);
      const t = time((q, kk, v) => k.blockSparseAttention(q, kk, v, layout), x, runs);
      const row = {
        T, density: layout.density(), ...t,
        forwardSpeedup: dense.forwardMs / t.forwardMs, stepSpeedup: dense.stepMs / t.stepMs, memoryRatio: t.peakBytes / dense.peakBytes,
      };
      console.log(`${String(T).padStart(8)}   sparse    ${row.density.toFixed(3)}${ms(t.forwardMs)}    ${ms(t.stepMs)}${mb(t.peakBytes)}     ${row.forwardSpeedup.toFixed(2)}x        ${row.stepSpeedup.toFixed(2)}x`);
      return row;
    });
    for (const t of x) t.dispose();
    rows.push({ T, runs, dense, sparse, timeRatio_10_to_25: sparse[0].stepMs / sparse[1].stepMs, densityRatio_10_to_25: sparse[0].density / sparse[1].density });
  }
  const path = writeResult('sparse_attention', {
    bench: 'sparse_attention', threads: loadNative()!.info().threads, simd: loadNative()!.info(),
    loadAverage: { start: loadAtStart, end: loadavg() },
    config: { ...SHAPE, causal: false, layout: 'bslongformer (sliding window + global block 0)', dtype: 'float32', timing: 'median of runs after a warmup; one run at 16k' },
    results: rows,
  });
  console.log(`wrote ${path}`);
}

await main();
