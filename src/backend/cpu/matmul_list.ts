// The CPU matmulList (native/gemm_list.cc): a list of 2-d products (float32, or bfloat16/float16
// operands with float32 sums: the half GEMM's AMX / AVX-512 BF16 / convert paths) goes to the
// addon in as few calls as the argument buffer allows (about 170 products a call), each as its
// three views; the kernel checks shapes and dtypes and runs them all in one parallel pass.
import type { MatmulItem, View } from '../kernels.js';
import type { NativeView, Packer } from './native.js';

/** Numbers per product: three 2-d views of (handle, dtype, offset, ndim, 2 sizes, 2 strides). */
const PER_ITEM = 24;
/** count and accumulate. */
const HEADER = 2;

/**
 * Packs and runs matmul_list (Kernels['matmulList'] on the cpu backend).
 * @example packMatmulList(packer, nativeView, [{ a, b, out }], false)
 */
export function packMatmulList(p: Packer, native: (x: View) => NativeView, items: readonly MatmulItem[], accumulate: boolean): void {
  const perCall = Math.floor((p.slots - HEADER) / PER_ITEM);
  for (let first = 0; first < items.length; first += perCall) {
    const batch = items.slice(first, first + perCall);
    p.num(batch.length).num(accumulate ? 1 : 0);
    for (const t of batch) p.view(native(t.a)).view(native(t.b)).view(native(t.out));
    p.call('matmul_list');
  }
}
