// Placeholder entries for kernels whose CUDA implementation has not landed yet: each throws a
// clear error naming the kernel. Removed once every kernel of the table is implemented.
import type { Kernels } from '../../kernels.js';

export function pending<K extends keyof Kernels>(...names: K[]): Pick<Kernels, K> {
  return Object.fromEntries(names.map((n) => [n, () => { throw new Error(`cuda backend: kernel '${n}' is not implemented yet`); }])) as Pick<Kernels, K>;
}
