// In-place writes into an existing tensor or view (PyTorch's copy_ / fill_ and where(..., out=)):
// how caches and initialisers change their buffers through ops instead of reaching for a backend's
// kernels. Not recorded on the autograd tape: writing into a tensor that requires grad throws.
import { backendOf, withLayout } from '../backend/index.js';
import { shapeStr } from '../tensor/layout.js';
import type { Tensor } from '../tensor/tensor.js';
import { inputs, needsGrad } from './dispatch.js';

function checkTarget(op: string, dst: Tensor, ...srcs: Tensor[]): void {
  inputs(op, dst, ...srcs);
  if (needsGrad(dst, ...srcs)) throw new Error(`${op}: in-place writes are not differentiable (a tensor requires grad); run it under noGrad()`);
}

/** src broadcast to dst's shape (stride 0 on expanded dims), as a kernel argument. */
function expandedTo(op: string, src: Tensor, dst: Tensor) {
  if (src.shape.length === dst.shape.length && src.shape.every((s, i) => s === dst.shape[i])) return src;
  try {
    return withLayout(src, src.layout.expand(dst.shape));
  } catch {
    throw new Error(`${op}: ${shapeStr(src.shape)} does not broadcast to the destination ${shapeStr(dst.shape)}`);
  }
}

/**
 * dst[...] = src[...] (src broadcast to dst's shape, converted to dst's dtype); dst may be a view.
 * @example copy_(narrow(buffer, 2, pos, T), keys)
 */
export function copy_(dst: Tensor, src: Tensor): Tensor {
  checkTarget('copy_', dst, src);
  backendOf(dst).kernels.copy(expandedTo('copy_', src, dst), dst);
  return dst;
}

/**
 * Every element of dst set to value.
 * @example fill_(bias, 0)
 */
export function fill_(dst: Tensor, value: number): Tensor {
  checkTarget('fill_', dst);
  backendOf(dst).kernels.fill(dst, value);
  return dst;
}

/**
 * dst = cond ? src : dst, elementwise (cond and src broadcast to dst's shape, src of dst's dtype);
 * every element of dst is read before it is written, so no temporary the size of dst is made.
 * @example copyWhere_(cacheKeys, slotIsPosition, newKeys)
 */
export function copyWhere_(dst: Tensor, cond: Tensor, src: Tensor): Tensor {
  checkTarget('copyWhere_', dst, cond, src);
  if (cond.dtype !== 'bool') throw new Error(`copyWhere_: cond must be bool, got ${cond.dtype}`);
  if (src.dtype !== dst.dtype) throw new Error(`copyWhere_: src ${src.dtype} and dst ${dst.dtype} dtypes differ`);
  backendOf(dst).kernels.where(expandedTo('copyWhere_', cond, dst), expandedTo('copyWhere_', src, dst), dst, dst);
  return dst;
}
