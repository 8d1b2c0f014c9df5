// k.profile: per-kernel and per-op-backward time of a span of work on the CPU (see profiler.ts).
export { start, stop, report, isProfiling, type ProfileResult, type ReportOptions } from './profiler.js';
export { peakGflops } from './peak.js';
export type { KernelRow, OpRow, Phase } from './recorder.js';
