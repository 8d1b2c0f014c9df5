// Times every kernel call of a synchronous backend (the CPU's: a kernel returns when its work is
// done) by swapping each function of its kernel table for a timed wrapper while profiling, and
// putting the originals back after: off, the table is the backend's own, untouched. FLOPs are
// estimated for the products (2 M N K per GEMM, the attention's QKᵀ and PV), as DeepSpeed's flops
// profiler does per module. CUDA kernels are asynchronous: backend/cuda/profile.ts times them with events.
import type { AttentionOpts, Backend, QuantWeight, View } from '../backend/kernels.js';
import { addKernel } from './recorder.js';

const numel = (v: View): number => v.layout.shape.reduce((a, b) => a * b, 1);
const isView = (x: unknown): x is View => typeof x === 'object' && x !== null && 'layout' in x && 'dtype' in x && 'storage' in x;

/** 4 B H Tq Tk hd of the scores and the weighted sum (half of it under a causal mask). */
function attentionFlops(q: View, k: View, o: AttentionOpts): number {
  const [Tk] = k.layout.shape.slice(-2);
  const f = 4 * numel(q) * Tk;
  return o.causal ? f / 2 : f;
}

/** Estimated FLOPs of one call, by kernel (0: not a product); `result` is what the call returned. */
function flopsOf(name: string, args: unknown[], result: unknown): number {
  switch (name) {
    case 'matmul': {
      const [a, , out] = args as [View, View, View];
      return 2 * numel(out) * a.layout.shape[a.layout.shape.length - 1];
    }
    case 'matmulBias': {
      // a declined call (false) computed nothing: the op's fallback matmul is counted instead
      const [a, , , out] = args as [View, View, View, View];
      return result === false ? 0 : 2 * numel(out) * a.layout.shape[a.layout.shape.length - 1];
    }
    case 'quantLinear': {
      const [, w, y] = args as [View, QuantWeight, View];
      return 2 * numel(y) * w.K;
    }
    case 'quantLinearBackward': {
      const [, w, dx] = args as [View, QuantWeight, View];
      return 2 * numel(dx) * w.N;
    }
    case 'rmsNormQkvRope': {
      const [x, , , , , , , , out] = args as [View, null, number, number, unknown, View, View, unknown, View];
      return 2 * numel(out) * x.layout.shape[1];
    }
    case 'rmsNormGateUpGlu': {
      const [x, , , , , , out] = args as [View, null, number, number, unknown, unknown, View];
      return 4 * numel(out) * x.layout.shape[1]; // gate and up: 2F outputs per row
    }
    case 'linearResidual': {
      const [x, , , out] = args as [View, unknown, View, View];
      return 2 * numel(out) * x.layout.shape[1];
    }
    case 'attention':
      return attentionFlops(args[0] as View, args[1] as View, args[4] as AttentionOpts);
    // backward recomputes the scores and forms dV, dP, dQ, dK: five products to forward's two
    case 'attentionBackward':
      return 2.5 * attentionFlops(args[0] as View, args[1] as View, args[7] as AttentionOpts);
    default:
      return 0;
  }
}

/** Per timed backend: each table it was timed through (its kernels, its paged kernels) with the original functions. */
const installed = new Map<Backend, [object, Map<string, unknown>][]>();

/** 'copy float32->bfloat16' for a cast, else the kernel and its first operand's dtype. */
function rowName(name: string, args: unknown[]): string {
  const views = args.filter(isView);
  if (!views.length) return name;
  if (name === 'copy' && views[1] && views[1].dtype !== views[0].dtype) return `copy ${views[0].dtype}->${views[1].dtype}`;
  return `${name} ${views[0].dtype}`;
}

/** Replaces each function of a kernel table with a timed wrapper; returns the originals. */
function timeTable(table: object): Map<string, unknown> {
  const originals = new Map<string, unknown>();
  for (const name of Object.keys(table)) {
    const fn: unknown = Reflect.get(table, name);
    if (typeof fn !== 'function') continue;
    originals.set(name, fn);
    Reflect.set(table, name, (...args: unknown[]): unknown => {
      const t0 = performance.now();
      const r: unknown = Reflect.apply(fn, table, args);
      addKernel(name, rowName(name, args), performance.now() - t0, flopsOf(name, args, r));
      return r;
    });
  }
  return originals;
}

/** The tables whose calls are timed: the kernel table, and the paged KV-cache, encoder and decode fused kernels where present. */
const tablesOf = (backend: Backend): object[] =>
  [backend.kernels, ...[backend.paged, backend.encoder, backend.decode].filter((t): t is NonNullable<typeof t> => t !== undefined)];

/** Replaces each kernel of `backend`'s tables with a timed wrapper (once; uninstallTimers puts the originals back). */
export function installTimers(backend: Backend): void {
  if (installed.has(backend)) return;
  installed.set(backend, tablesOf(backend).map((t) => [t, timeTable(t)]));
}

export function uninstallTimers(): void {
  for (const tables of installed.values()) for (const [table, originals] of tables) for (const [name, fn] of originals) Reflect.set(table, name, fn);
  installed.clear();
}
