// The CPU AdamW step and gradient-norm term (native/optim.cc): a parameter group's tensors go to the addon in as few
// calls as the argument buffer allows (about 450 tensors a call), each tensor as its numel and the
// (handle, offset) of its four contiguous float32 buffers; the kernel checks sizes and bounds.
import type { AdamWStep, AdamWTensors, View } from '../kernels.js';
import { shapeStr } from '../../tensor/layout.js';
import type { NativeView, Packer } from './native.js';

/** Numbers per tensor in the packed call: numel, then handle and offset of 4 buffers. */
const PER_TENSOR = 9;
/** count and the 7 hyper-parameters. */
const HEADER = 8;

function checkSame(x: View, like: View, what: string, kernel = 'adamw'): void {
  if (x.dtype !== 'float32' || !x.layout.isContiguous() || x.layout.numel !== like.layout.numel)
    throw new Error(`cpu ${kernel}: ${what} must be a contiguous float32 tensor of ${like.layout.numel} elements, got ${x.dtype} ${shapeStr(x.layout.shape)}`);
}

/**
 * Packs and runs adamw over every tensor (Kernels['adamw'] on the cpu backend).
 * @example packAdamW(packer, nativeView, [{ param, grad, expAvg, expAvgSq }], step)
 */
export function packAdamW(p: Packer, native: (x: View) => NativeView, tensors: readonly AdamWTensors[], s: AdamWStep): void {
  for (const t of tensors) {
    checkSame(t.param, t.param, 'param');
    checkSame(t.grad, t.param, 'grad');
    checkSame(t.expAvg, t.param, 'exp_avg');
    checkSame(t.expAvgSq, t.param, 'exp_avg_sq');
  }
  const perCall = Math.floor((p.slots - HEADER) / PER_TENSOR);
  for (let first = 0; first < tensors.length; first += perCall) {
    const batch = tensors.slice(first, first + perCall);
    p.num(batch.length).num(s.lr).num(s.beta1).num(s.beta2).num(s.eps).num(s.weightDecay).num(s.bc1).num(s.bc2);
    for (const t of batch) {
      p.num(t.param.layout.numel);
      for (const x of [t.param, t.grad, t.expAvg, t.expAvgSq]) {
        const nv = native(x);
        p.num(nv.handle).num(nv.offset);
      }
    }
    p.call('adamw');
  }
}

/**
 * sum(x²) of a contiguous float32 x into a float64 scalar out (Kernels['sumSquares'] on the cpu backend).
 * @example packSumSquares(packer, nativeView, grad, out)
 */
export function packSumSquares(p: Packer, native: (x: View) => NativeView, x: View, out: View): void {
  checkSame(x, x, 'x', 'sumSquares');
  if (out.dtype !== 'float64' || out.layout.numel !== 1) throw new Error(`cpu sumSquares: out must be one float64, got ${out.dtype} ${shapeStr(out.layout.shape)}`);
  const [nx, no] = [native(x), native(out)];
  p.num(x.layout.numel).num(nx.handle).num(nx.offset).num(no.handle).num(no.offset).call('sum_squares');
}
