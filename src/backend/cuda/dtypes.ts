// Kernel-name suffixes per dtype, as the .cu files instantiate them.
import type { DType } from '../../tensor/dtype.js';

export const SUFFIX: Record<DType, string> = {
  float32: 'f32', float64: 'f64', float16: 'f16', bfloat16: 'bf16', int32: 'i32', int64: 'i64', int8: 'i8', uint8: 'u8', bool: 'bool',
};

/** Throws unless dtype is one of `allowed`; names the kernel and the operand. */
export function requireDType(kernel: string, what: string, dtype: DType, allowed: readonly DType[]): void {
  if (!allowed.includes(dtype)) throw new Error(`cuda ${kernel}: ${what} has dtype ${dtype} (supported: ${allowed.join(', ')})`);
}

/** The suffix of a kernel instantiated for two storage types: one suffix when they agree (`bf16`), else both (`bf16_f32`). */
export const pairSuffix = (a: DType, b: DType): string => (a === b ? SUFFIX[a] : `${SUFFIX[a]}_${SUFFIX[b]}`);
