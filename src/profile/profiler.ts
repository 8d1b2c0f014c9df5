// k.profile: where a step's time goes, per kernel and per op backward, like DeepSpeed's flops
// profiler. start() times every kernel of the default backend (when it runs synchronously: the CPU,
// the reference) and every op's backward closure; stop() puts the backend's own kernels back and
// returns what was recorded; report() prints the top rows with calls, ms, share of the profiled
// time and GFLOP/s, and the fraction of the machine's measured GEMM peak the whole span reached.
import { defaultBackend, getBackend } from '../backend/index.js';
import { peakGflops } from './peak.js';
import { type KernelRow, type OpRow, clearRecords, kernelRows, opRows, profiling, setProfiling } from './recorder.js';
import { installTimers, uninstallTimers } from './kernels.js';

export interface ProfileResult {
  /** wall-clock milliseconds from start() to stop() */
  wallMs: number;
  /** per (kernel, dtype, phase), most expensive first */
  kernels: KernelRow[];
  /** per op: exclusive time in its backward closures, most expensive first */
  ops: OpRow[];
}

let t0 = 0;
let last: ProfileResult | null = null;

/**
 * Starts profiling the default backend's kernels and every op's backward (clears earlier records).
 * @example k.profile.start(); trainStep(); k.profile.stop(); console.log(k.profile.report({ steps: 1 }))
 */
export function start(opts: { backend?: string } = {}): void {
  if (profiling) throw new Error('profile.start: already profiling (call profile.stop() first)');
  const backend = opts.backend ? getBackend(opts.backend) : defaultBackend();
  if (backend.name === 'cuda')
    throw new Error('profile.start: CUDA kernels run asynchronously, so host timers cannot time them: use KESTREL_CUDA_PROFILE=1 (backend/cuda/profile.ts)');
  clearRecords();
  installTimers(backend);
  setProfiling(true);
  t0 = performance.now();
}

/**
 * Stops profiling, restores the backend's kernels and returns the records (report() formats them).
 * @example const { wallMs, kernels } = k.profile.stop()
 */
export function stop(): ProfileResult {
  if (!profiling) throw new Error('profile.stop: not profiling (call profile.start() first)');
  const wallMs = performance.now() - t0;
  setProfiling(false);
  uninstallTimers();
  const byMs = <T extends { ms: number }>(a: T, b: T): number => b.ms - a.ms;
  last = { wallMs, kernels: kernelRows().sort(byMs), ops: opRows().sort(byMs) };
  return last;
}

export interface ReportOptions {
  /** optimizer steps the profiled span covered (the table then also says ms per step) */
  steps?: number;
  /** rows per table (default 15) */
  top?: number;
  /** measure the GEMM peak for the fraction-of-peak line (default true; takes ~0.1 s) */
  peak?: boolean;
}

const pad = (s: string, n: number): string => (s.length >= n ? s : s + ' '.repeat(n - s.length));
const num = (x: number, d = 1): string => x.toFixed(d);

/**
 * The last profile as a table: top kernels and op backwards by total time, then the whole span's
 * GFLOP/s against the measured float32 and bf16 GEMM peaks.
 * @example process.stderr.write(k.profile.report({ steps: 3 }))
 */
export function report(opts: ReportOptions = {}, result: ProfileResult | null = last): string {
  if (!result) throw new Error('profile.report: nothing profiled yet (profile.start(), run, profile.stop())');
  const { wallMs, kernels, ops } = result;
  const top = opts.top ?? 15;
  const steps = opts.steps ?? 1;
  const pct = (ms: number): string => `${num((100 * ms) / wallMs)}%`;
  const lines: string[] = [];
  lines.push(`profile: ${num(wallMs, 0)} ms over ${steps} step${steps === 1 ? '' : 's'} (${num(wallMs / steps, 0)} ms/step)`);
  lines.push(`${pad('kernel', 36)} ${pad('phase', 9)} ${'calls'.padStart(7)} ${'ms'.padStart(9)} ${'share'.padStart(6)} ${'GFLOP/s'.padStart(8)}`);
  for (const r of kernels.slice(0, top))
    lines.push(`${pad(r.name, 36)} ${pad(r.phase, 9)} ${String(r.calls).padStart(7)} ${num(r.ms).padStart(9)} ${pct(r.ms).padStart(6)} ${(r.flops ? num(r.flops / r.ms / 1e6) : '').padStart(8)}`);
  const kernelMs = kernels.reduce((a, r) => a + r.ms, 0);
  lines.push(`${pad(`all ${kernels.length} kernel rows`, 46)} ${String(kernels.reduce((a, r) => a + r.calls, 0)).padStart(7)} ${num(kernelMs).padStart(9)} ${pct(kernelMs).padStart(6)}  (the rest: TypeScript, allocation, the tape)`);
  if (ops.length) {
    lines.push('', `${pad('op backward (exclusive)', 46)} ${'calls'.padStart(7)} ${'ms'.padStart(9)} ${'share'.padStart(6)}`);
    for (const r of ops.slice(0, top)) lines.push(`${pad(r.name, 46)} ${String(r.calls).padStart(7)} ${num(r.ms).padStart(9)} ${pct(r.ms).padStart(6)}`);
  }
  const flops = kernels.reduce((a, r) => a + r.flops, 0);
  if (flops > 0) {
    const rate = flops / wallMs / 1e6;
    let line = `products: ${num(flops / 1e9 / steps)} GFLOP/step, ${num(rate)} GFLOP/s over the whole span`;
    if (opts.peak !== false) {
      const b = defaultBackend();
      const f32 = peakGflops('float32');
      line += `; ${num((100 * rate) / f32)}% of the float32 GEMM peak (${num(f32, 0)} GFLOP/s measured)`;
      if (b.halfMatmul) {
        const bf16 = peakGflops('bfloat16');
        line += `, ${num((100 * rate) / bf16)}% of the bf16 peak (${num(bf16, 0)})`;
      }
    }
    lines.push('', line);
  }
  return lines.join('\n') + '\n';
}

/** True while profiling (the recorder's flag). */
export const isProfiling = (): boolean => profiling;
