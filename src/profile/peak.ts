// The machine's measured GEMM rate, the denominator of "fraction of peak": the backend's own matmul
// kernel on a large square product, best of a few runs (a peak, not a typical time), per dtype,
// measured once per process. bf16 where the backend multiplies half operands (the CPU's AMX /
// vdpbf16ps paths), float32 always.
import { backendOf, defaultBackend, getBackend } from '../backend/index.js';
import type { DType } from '../tensor/dtype.js';
import { tidy } from '../tensor/scope.js';
import { randn } from '../ops/creation.js';
import { emptyLike } from '../ops/dispatch.js';
import { to } from '../ops/elementwise.js';

const measured = new Map<string, number>();

/**
 * Best GFLOP/s of an n x n x n product in `dtype` on `backend` (default: the default backend).
 * @example peakGflops('bfloat16') // 734 measured (AMX, 2 busy cores of a Xeon)
 */
export function peakGflops(dtype: DType, opts: { backend?: string; n?: number; runs?: number } = {}): number {
  if (dtype !== 'float32' && !getBackend(opts.backend ?? defaultBackend().name).halfMatmul)
    throw new Error(`peakGflops: backend '${opts.backend ?? defaultBackend().name}' has no ${dtype} GEMM (halfMatmul is false)`);
  const n = opts.n ?? 1024;
  const key = `${opts.backend ?? ''}/${dtype}/${n}`;
  const hit = measured.get(key);
  if (hit !== undefined) return hit;
  const best = tidy(() => {
    const a = to(randn([n, n], { backend: opts.backend }), dtype);
    const b = to(randn([n, n], { backend: opts.backend }), dtype);
    const out = emptyLike(a, [n, n]);
    const k = backendOf(a).kernels;
    let ms = Infinity;
    for (let i = 0; i < (opts.runs ?? 4) + 1; i++) {
      const t0 = performance.now();
      k.matmul(a, b, out, false);
      if (i > 0) ms = Math.min(ms, performance.now() - t0); // the first call warms the threads and caches
    }
    return (2 * n ** 3) / (ms / 1e3) / 1e9;
  });
  measured.set(key, best);
  return best;
}
