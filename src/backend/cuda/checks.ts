// Argument checks shared by the CUDA kernels, worded as the CPU kernels word them (native/*.cc),
// so one test names the same failure on every device: `<kernel>: <operand> [2,3] ...`.
import type { View } from '../kernels.js';

/** A shape as the native kernels print it: [2,3]. */
export const dims = (s: readonly number[]): string => `[${s.join(',')}]`;

export function requireSameShape(kernel: string, a: View, an: string, b: View, bn: string): void {
  const [x, y] = [a.layout.shape, b.layout.shape];
  if (x.length !== y.length || x.some((v, i) => v !== y[i]))
    throw new Error(`cuda ${kernel}: ${an} ${dims(x)} and ${bn} ${dims(y)} must have the same shape`);
}

export function requireContiguous(kernel: string, v: View, what: string): void {
  if (!v.layout.isContiguous()) throw new Error(`cuda ${kernel}: ${what} ${dims(v.layout.shape)} must be contiguous`);
}
