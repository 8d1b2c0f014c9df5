// Placeholder entries for kernels whose CUDA implementation has not landed yet: each throws a
// clear error naming the kernel. Removed once every kernel of the table is implemented.
import type { Kernels } from '../../kernels.js';

export function pending<K extends keyof Kernels>(...names: K[]): Pick<Kernels, K> {
  const out: Partial<Record<keyof Kernels, () => never>> = {};
  for (const n of names) out[n] = () => { throw new Error(`cuda backend: kernel '${n}' is not implemented yet`); };
  return out as Pick<Kernels, K>;
}
