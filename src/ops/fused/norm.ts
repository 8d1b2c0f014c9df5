// Fused RMSNorm / LayerNorm over the last dim (equal to rmsNormComposite / layerNormComposite).
// Forward keeps rstd (and the mean) per row so backward needs no second reduction pass over x.
// RMSNorm, with xhat = x rstd and gw = g (offset + w):
//   dx = rstd (gw - xhat mean(gw xhat)),   dw = sum_rows g xhat
// LayerNorm, with xhat = (x - mean) rstd and gw = g w:
//   dx = rstd (gw - mean(gw) - xhat mean(gw xhat)),   dw = sum_rows g xhat,   db = sum_rows g
// RMSNorm's backward writes dx into the incoming gradient's buffer when nothing else holds it
// (ownsStorage): the kernel reads each element of dy before it overwrites it. A half x is upcast
// unless the backend's kernels take it (halfElementwise): then x, out, dx and the saved x stay
// half, the weight and its gradient keep their dtype (half or float32), rstd is float32.
import { backendOf } from '../../backend/index.js';
import { isHalf } from '../../tensor/dtype.js';
import { shapeStr } from '../../tensor/layout.js';
import type { Tensor } from '../../tensor/tensor.js';
import { type InPlaceOpts, emptyLike, inputs, needsGrad, ownsStorage, record, save } from '../dispatch.js';
import { inCompute, inKernelCompute, to } from '../elementwise.js';
import { contiguous } from '../view.js';

function checkParam(op: string, x: Tensor, p: Tensor | null, what: string): void {
  if (p && (p.ndim !== 1 || p.shape[0] !== x.shape[x.ndim - 1]))
    throw new Error(`${op}: ${what} ${shapeStr(p.shape)} does not match the last dim of input ${shapeStr(x.shape)}`);
}

/**
 * An optional parameter, contiguous and in the input's compute dtype; beside a half x (the kernel
 * takes it: halfElementwise) in x's dtype or float32, as the upcast path would compute with it.
 */
function asInput(p: Tensor | null, x: Tensor): Tensor | null {
  if (!p) return null;
  const ok = p.dtype === x.dtype || (isHalf(x.dtype) && p.dtype === 'float32');
  return contiguous(ok ? p : to(p, isHalf(x.dtype) ? 'float32' : x.dtype));
}

export function rmsNormFused(x: Tensor, weight: Tensor | null, eps: number, offset: number, opts: InPlaceOpts = {}): Tensor {
  inputs('rmsNorm', x, weight);
  if (x.ndim === 0) throw new Error('rmsNorm: input must have at least 1 dim');
  checkParam('rmsNorm', x, weight, 'weight');
  return inKernelCompute(x, (xf) => {
    const xc = contiguous(xf);
    const w = asInput(weight, xc);
    const out = emptyLike(xc);
    const rstd = emptyLike(xc, xc.shape.slice(0, -1), isHalf(xc.dtype) ? 'float32' : xc.dtype);
    const k = backendOf(xc).kernels;
    k.rmsNorm(xc, w, eps, offset, out, rstd);
    if (!needsGrad(xf, w)) {
      for (const t of [xc, w, rstd]) t?.dispose();
      return out;
    }
    const [xs, ws, rs] = [save(xc), w && save(w), save(rstd)];
    for (const t of [xc, rstd]) t.dispose();
    const res = record('rmsNorm', out, [xf, w], (g) => {
      const mine = (opts.inPlace ?? true) && ownsStorage(g) && g.dtype === xs.dtype;
      const gc = mine ? g : contiguous(g);
      const dx = mine ? g : emptyLike(gc);
      const dw = ws && w?.requiresGrad ? emptyLike(ws) : null;
      k.rmsNormBackward(xs, ws, offset, rs, gc, dx, dw);
      return [dx, dw];
    }, ws ? [xs, ws, rs] : [xs, rs]);
    w?.dispose();
    return res;
  });
}

export function layerNormFused(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps: number): Tensor {
  inputs('layerNorm', x, weight, bias);
  if (x.ndim === 0) throw new Error('layerNorm: input must have at least 1 dim');
  checkParam('layerNorm', x, weight, 'weight');
  checkParam('layerNorm', x, bias, 'bias');
  return inCompute(x, (xf) => {
    const xc = contiguous(xf);
    const [w, b] = [asInput(weight, xc), asInput(bias, xc)];
    const out = emptyLike(xc);
    const rows = xc.shape.slice(0, -1);
    const [mean, rstd] = [emptyLike(xc, rows), emptyLike(xc, rows)];
    const k = backendOf(xc).kernels;
    k.layerNorm(xc, w, b, eps, out, mean, rstd);
    if (!needsGrad(xf, w, b)) {
      for (const t of [xc, w, b, mean, rstd]) t?.dispose();
      return out;
    }
    const saved = [save(xc), save(mean), save(rstd), ...(w ? [save(w)] : [])];
    const [xs, ms, rs, ws] = saved;
    const res = record('layerNorm', out, [xf, w, b], (g) => {
      const gc = contiguous(g);
      const dx = emptyLike(gc);
      const dw = w?.requiresGrad ? emptyLike(xs, [xs.shape[xs.ndim - 1]]) : null;
      const db = b?.requiresGrad ? emptyLike(xs, [xs.shape[xs.ndim - 1]]) : null;
      k.layerNormBackward(xs, ws ?? null, ms, rs, gc, dx, dw, db);
      return [dx, dw, db];
    }, saved);
    for (const t of [xc, w, b, mean, rstd]) t?.dispose();
    return res;
  });
}
