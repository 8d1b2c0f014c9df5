// Elementwise bandwidth benchmark: the native unary / binary / reduce / copy kernels on ~64 MB
// float32 tensors, on 1 and 2 threads, as GB/s (bytes read + written) and as a fraction of a
// plain memcpy of one such tensor, timed alternately with each case on the same threads. The memcpy
// baseline is the `memcpy_bench` kernel (native/copy.cc): std::memcpy in one chunk per thread,
// not the copy kernel itself. glibc only streams copies larger than ~3/4 of the L3 it detects,
// so on a VM that reports a large L3 the baseline uses plain stores while the kernels here stream
// outputs of 16 MB and more (native/ew_isa.h): ratios above 100% are possible. Each case is first validated
// against the reference backend on a small shape, then warmed up and timed as a median.
// Run: node --import tsx bench/elementwise.ts [--threads 1,2] [--mb 64] [--runs 9]
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as k from '../src/index.js';
import { commitHash, cpuModel } from './lib/report.js';
import { loadNative, nativeLoadError, type NativeAddon } from '../src/backend/addon.js';
import { Packer, type NativeView } from '../src/backend/cpu/native.js';
import { UNARY_OPS, ARITH_OPS, type UnaryOp } from '../src/backend/kernels.js';

export interface ElementwiseResult {
  name: string;
  threads: number;
  bytes: number;
  medianMs: number;
  gbps: number;
  /** memcpy of one tensor (read + written bytes per second), timed alternately with this case */
  memcpyGbps: number;
  /** gbps / memcpyGbps */
  ofMemcpy: number;
}

interface Case {
  name: string;
  /** bytes read + written by one call */
  bytes: number;
  run(): void;
  /** the same computation on a small shape on cpu and ref: max relative error */
  check(): number;
}

const here = dirname(fileURLToPath(import.meta.url));
const unaryCode = (op: UnaryOp): number => UNARY_OPS.indexOf(op);
const binaryCode = (op: (typeof ARITH_OPS)[number]): number => ARITH_OPS.indexOf(op);

function view(handle: number, shape: number[], strides?: number[]): NativeView {
  const s = strides ?? shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  return { handle, dtype: 'float32', offset: 0, shape, strides: s };
}

/** Max relative error of cpu against ref for an op built from the public API. */
function maxRelErr(f: (b: 'cpu' | 'ref') => k.Tensor): number {
  return k.tidy(() => {
    const make = (b: 'cpu' | 'ref') => f(b).toFloat32Array();
    const got = make('cpu');
    const want = make('ref');
    let worst = 0;
    for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / Math.max(Math.abs(want[i]), 1e-6));
    return worst;
  });
}

function input(shape: number[], b: 'cpu' | 'ref', seed: number): k.Tensor {
  const n = shape.reduce((a, c) => a * c, 1);
  let s = seed;
  const d = Float32Array.from({ length: n }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 8 - 4);
  return k.tensor(d, { shape, backend: b });
}

function cases(addon: NativeAddon, p: Packer, n: number): { cases: Case[]; memcpy: () => void; free(): void } {
  const handles = [0, 1, 2].map(() => addon.alloc(n * 4, false));
  const [hx, hy, hz] = handles;
  p.view(view(hx, [n])).num(0).num(0).num(0).num(0).call('random'); // uniform in [0, 1)
  p.view(view(hy, [n])).num(1).num(1).num(0).num(0).call('random'); // normal
  const D = 4096, R = n / D;
  const small = [37, 129];
  const unary = (op: UnaryOp): Case => ({
    name: op, bytes: 8 * n,
    run: () => p.num(unaryCode(op)).view(view(hy, [n])).view(view(hz, [n])).num(0).num(0).call('unary'),
    check: () => maxRelErr((b) => k.unary(op, input(small, b, 1))),
  });
  const binary = (op: 'add' | 'mul'): Case => ({
    name: op, bytes: 12 * n,
    run: () => p.num(binaryCode(op)).view(view(hx, [n])).view(view(hy, [n])).view(view(hz, [n])).call('binary'),
    check: () => maxRelErr((b) => (op === 'add' ? k.add : k.mul)(input(small, b, 2), input(small, b, 3))),
  });
  const list: Case[] = [
    binary('add'), binary('mul'), unary('exp'), unary('silu'), unary('gelu_tanh'),
    {
      name: 'mul scalar', bytes: 8 * n,
      run: () => p.num(binaryCode('mul')).view(view(hx, [n])).view(view(hy, [n], [0])).view(view(hz, [n])).call('binary'),
      check: () => maxRelErr((b) => k.mul(input(small, b, 4), 1.7)),
    },
    {
      name: `[N,D]+[D] (D=${D})`, bytes: 8 * n + 4 * D,
      run: () => p.num(binaryCode('add')).view(view(hx, [R, D])).view(view(hy, [R, D], [0, 1])).view(view(hz, [R, D])).call('binary'),
      check: () => maxRelErr((b) => k.add(input(small, b, 5), input([small[1]], b, 6))),
    },
    {
      name: `sum last dim [N,${D}]`, bytes: 4 * n + 4 * R,
      run: () => p.num(0).view(view(hx, [R, D])).view(view(hz, [R, 1])).call('reduce'),
      check: () => maxRelErr((b) => k.sum(input(small, b, 7), -1)),
    },
    {
      name: `sum dim 0 [N,${D}]`, bytes: 4 * n + 4 * D,
      run: () => p.num(0).view(view(hx, [R, D])).view(view(hz, [1, D])).call('reduce'),
      check: () => maxRelErr((b) => k.sum(input(small, b, 8), 0)),
    },
    {
      name: `copy transposed [${D},${R}]^T`, bytes: 8 * n,
      run: () => p.view(view(hx, [R, D], [1, R])).view(view(hz, [R, D])).call('copy'),
      check: () => maxRelErr((b) => input(small, b, 9).t().contiguous()),
    },
  ];
  const memcpy = () => p.view(view(hx, [n])).view(view(hz, [n])).call('memcpy_bench');
  return { cases: list, memcpy, free: () => handles.forEach((h) => addon.free(h)) };
}

/** Medians of f and of the memcpy baseline, timed alternately so both see the same machine state. */
function pairedMedians(f: () => void, base: () => void, runs: number): [number, number] {
  for (let i = 0; i < 2; i++) { f(); base(); }
  const tf: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < runs; i++) {
    let t0 = performance.now();
    base();
    tb.push(performance.now() - t0);
    t0 = performance.now();
    f();
    tf.push(performance.now() - t0);
  }
  const med = (ts: number[]) => ts.sort((a, b) => a - b)[Math.floor(ts.length / 2)];
  return [med(tf), med(tb)];
}



export interface BenchOptions { threads?: number[]; mb?: number; runs?: number; write?: boolean }

/** Runs the benchmark, prints a table and writes bench/results/elementwise.json. */
export async function benchElementwise(opts: BenchOptions = {}): Promise<ElementwiseResult[]> {
  const addon = loadNative();
  if (!addon) throw new Error(`elementwise bench: native addon unavailable: ${nativeLoadError()}`);
  const { threads = [1, 2], mb = 64, runs = 9, write = true } = opts;
  const n = Math.floor((mb * 2 ** 20) / 4 / 4096) * 4096;
  const p = new Packer(addon);
  const set = cases(addon, p, n);
  for (const c of set.cases) {
    const err = c.check();
    if (!(err < 1e-5)) throw new Error(`elementwise bench: ${c.name} disagrees with the reference (max rel error ${err})`);
  }
  const results: ElementwiseResult[] = [];
  // The machine is shared: the load average says whether the second core was free.
  const load = loadavg()[0];
  console.log(`elementwise bandwidth, ${(n * 4 / 2 ** 20).toFixed(0)} MB float32 tensors, ${cpuModel()}, ${JSON.stringify(addon.info())}, load ${load.toFixed(2)}`);
  console.log(`${'case'.padEnd(30)} thr  ${'ms'.padStart(8)}  ${'GB/s'.padStart(6)}  memcpy GB/s  % memcpy`);
  for (const t of threads) {
    addon.setThreads(t);
    for (const c of set.cases) {
      const [ms, mcMs] = pairedMedians(c.run, set.memcpy, runs);
      const gbps = c.bytes / (ms * 1e6);
      const mc = (8 * n) / (mcMs * 1e6);
      const r = { name: c.name, threads: t, bytes: c.bytes, medianMs: ms, gbps, memcpyGbps: mc, ofMemcpy: gbps / mc };
      results.push(r);
      console.log(`${c.name.padEnd(30)} ${String(t).padStart(3)}  ${ms.toFixed(2).padStart(8)}  ${gbps.toFixed(1).padStart(6)}  ${mc.toFixed(1).padStart(11)}  ${(100 * r.ofMemcpy).toFixed(0).padStart(7)}%`);
    }
  }
  set.free();
  if (write) {
    mkdirSync(join(here, 'results'), { recursive: true });
    const out = {
      bench: 'elementwise', commit: commitHash(), date: new Date().toISOString(), cpu: cpuModel(), native: addon.info(),
      threads, tensorBytes: n * 4, runs, loadAverage: load,
      memcpy: 'memcpy_bench kernel: std::memcpy of one tensor, one chunk per thread; GB/s counts read + written bytes',
      results,
    };
    writeFileSync(join(here, 'results', 'elementwise.json'), JSON.stringify(out, null, 2) + '\n');
  }
  return results;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const arg = (name: string): string | undefined => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : undefined;
  };
  await benchElementwise({
    threads: arg('threads')?.split(',').map(Number),
    mb: arg('mb') ? Number(arg('mb')) : undefined,
    runs: arg('runs') ? Number(arg('runs')) : undefined,
  });
}
