// Mixed-precision compute scope (torch.autocast's role): inside it, matmuls round their float32
// operands to bfloat16/float16 (accumulating in float32) and produce that dtype, so activations
// are stored at half size while parameters stay float32 master weights.
import type { DType } from './dtype.js';

let current: DType | null = null;

export const autocastDtype = (): DType | null => current;

/** Runs fn with matmul compute in dtype ('bfloat16' | 'float16'); null turns it off. */
export function autocast<T>(dtype: 'bfloat16' | 'float16' | null, fn: () => T): T {
  const prev = current;
  current = dtype;
  try {
    return fn();
  } finally {
    current = prev;
  }
}
