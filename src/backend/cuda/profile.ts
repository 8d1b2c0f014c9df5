// KESTREL_CUDA_PROFILE=1: device time per kernel. Every launch and GEMM is bracketed by two CUDA
// events (cheap, but not free: profile a few steps, not a benchmark); report() waits for the
// queue, sums the intervals by kernel name and frees the events. bench/gpu/bench.ts --profile
// writes the table of a training step.
import { cudaContext } from './context.js';

export const profiling = (): boolean => process.env.KESTREL_CUDA_PROFILE === '1';

const pending: { name: string; start: number; end: number }[] = [];

/** Runs one queued operation between two events when profiling (else just runs it). */
export function timed(name: string, queue: () => void): void {
  if (!profiling()) return queue();
  const { addon } = cudaContext();
  const start = addon.cudaEvent();
  queue();
  pending.push({ name, start, end: addon.cudaEvent() });
}

export interface KernelTime {
  name: string;
  calls: number;
  ms: number;
}

/** Device milliseconds per kernel since the last report, most expensive first. */
export function profileReport(): KernelTime[] {
  const { addon } = cudaContext();
  const by = new Map<string, KernelTime>();
  for (const p of pending) {
    const ms = addon.cudaEvent(p.start, p.end);
    const row = by.get(p.name) ?? { name: p.name, calls: 0, ms: 0 };
    row.calls++;
    row.ms += ms;
    by.set(p.name, row);
    addon.cudaEvent(p.start, -1);
    addon.cudaEvent(p.end, -1);
  }
  pending.length = 0;
  return [...by.values()].sort((a, b) => b.ms - a.ms);
}
