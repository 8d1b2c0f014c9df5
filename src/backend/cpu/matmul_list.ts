// The CPU matmulList (native/gemm_list.cc): a list of 2-d float32 products goes to the addon in
// as few calls as the argument buffer allows (about 170 products a call), each as its three views;
// the kernel checks shapes and runs them all in one parallel pass. Half-precision items take the
// matmul kernel one by one (its half GEMM path).
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
  const f32: MatmulItem[] = [];
  for (const t of items) {
    if (t.a.dtype === 'float32' && t.b.dtype === 'float32' && t.out.dtype === 'float32') f32.push(t);
    else p.view(native(t.a)).view(native(t.b)).view(native(t.out)).num(accumulate ? 1 : 0).call('matmul');
  }
  const perCall = Math.floor((p.slots - HEADER) / PER_ITEM);
  for (let first = 0; first < f32.length; first += perCall) {
    const batch = f32.slice(first, first + perCall);
    p.num(batch.length).num(accumulate ? 1 : 0);
    for (const t of batch) p.view(native(t.a)).view(native(t.b)).view(native(t.out));
    p.call('matmul_list');
  }
}
