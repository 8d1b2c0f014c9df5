// What the profiler collects while it runs: time per (kernel, dtype, phase) with estimated FLOPs,
// and the time of each op's backward closure. Kept below src/ops so that autograd's one hook
// (`profiling ? timedBackward(...) : backward(g)` in ops/dispatch.ts) can import it; off, that
// boolean is the whole cost.

/**
 * Where in a training step a kernel ran: the optimizer's own kernel, inside an op's backward
 * closure, or elsewhere ('forward': the forward pass and the loss, including a fused loss's
 * gradient products formed there).
 */
export type Phase = 'forward' | 'backward' | 'optimizer';

/** The optimizer kernels of the kernel table (fused AdamW). */
const OPTIMIZER_KERNELS = new Set(['adamw']);

export interface KernelRow {
  /** kernel name with its operand dtype where it has one, e.g. 'matmul bfloat16' */
  name: string;
  phase: Phase;
  calls: number;
  ms: number;
  /** estimated floating-point operations (0 where the kernel has no estimate) */
  flops: number;
}

export interface OpRow {
  /** the op's tape name, e.g. 'loraLinear' */
  name: string;
  calls: number;
  /** time in its backward closure, minus nested backward closures (activation checkpointing) */
  ms: number;
}

/** Live binding: the kernel wrappers and dispatch.ts's backward hook test it. */
export let profiling = false;

const kernels = new Map<string, KernelRow>();
const ops = new Map<string, OpRow>();
let phase: Phase = 'forward';
/** time spent in nested backward closures, per open closure (exclusive times) */
const childMs: number[] = [];

export function setProfiling(on: boolean): void {
  profiling = on;
}

export function clearRecords(): void {
  kernels.clear();
  ops.clear();
  phase = 'forward';
  childMs.length = 0;
}

/** Adds one kernel call (called by the wrappers that profile.start() installs). */
export function addKernel(kernel: string, name: string, ms: number, flops: number): void {
  const at: Phase = OPTIMIZER_KERNELS.has(kernel) ? 'optimizer' : phase;
  const key = `${name}\u0000${at}`;
  let row = kernels.get(key);
  if (!row) kernels.set(key, (row = { name, phase: at, calls: 0, ms: 0, flops: 0 }));
  row.calls++;
  row.ms += ms;
  row.flops += flops;
}

/** Runs an op's backward closure, timed, with its kernels counted as backward. */
export function timedBackward<T>(name: string, fn: () => T): T {
  const prev = phase;
  phase = 'backward';
  childMs.push(0);
  const t0 = performance.now();
  try {
    return fn();
  } finally {
    const ms = performance.now() - t0;
    const nested = childMs.pop()!;
    if (childMs.length) childMs[childMs.length - 1] += ms;
    phase = prev;
    let row = ops.get(name);
    if (!row) ops.set(name, (row = { name, calls: 0, ms: 0 }));
    row.calls++;
    row.ms += ms - nested;
  }
}

export const kernelRows = (): KernelRow[] => [...kernels.values()].map((r) => ({ ...r }));
export const opRows = (): OpRow[] => [...ops.values()].map((r) => ({ ...r }));
