// Fused residual add + LayerNorm, BERT's post-LN "add & norm" (HF BertSelfOutput / BertOutput):
// equals layerNormComposite(add(x, residual), weight, bias, eps). One forward pass writes
// s = x + residual (kept for backward, as the composite's LayerNorm keeps its input) and normalizes
// each row while it is in cache, instead of an add kernel then a norm kernel reading s back.
// Backward is LayerNorm's over the saved s; the add passes ds to both inputs unchanged:
//   xhat = (s - mean) rstd, gw = dy w:  ds = rstd (gw - mean(gw) - xhat mean(gw xhat)),
//   dweight = sum_rows dy xhat,  dbias = sum_rows dy,  dx = dresidual = ds
// Taken where the backend has encoder kernels for the operands' dtype (float32 on the CPU; also
// float64 on the reference backend); anything else runs the composite.
import { backendOf } from '../../backend/index.js';
import { sameShape, shapeStr } from '../../tensor/layout.js';
import { tidy } from '../../tensor/scope.js';
import type { Tensor } from '../../tensor/tensor.js';
import { emptyLike, inputs, needsGrad, record, save } from '../dispatch.js';
import { add } from '../elementwise.js';
import { layerNorm } from '../norm.js';
import { contiguous } from '../view.js';

/**
 * LayerNorm(x + residual) over the last dim, in one pass each way where the backend fuses it.
 * @example addLayerNorm(dense.forward(h), residual, ln.weight, ln.bias, 1e-12)  // [B, T, D]
 */
export function addLayerNorm(x: Tensor, residual: Tensor, weight: Tensor | null, bias: Tensor | null, eps: number): Tensor {
  const enc = inputs('addLayerNorm', x, residual, weight, bias).encoder;
  if (!sameShape(x.shape, residual.shape))
    throw new Error(`addLayerNorm: input ${shapeStr(x.shape)} and residual ${shapeStr(residual.shape)} must have the same shape`);
  const D = x.shape[x.ndim - 1];
  for (const [p, what] of [[weight, 'weight'], [bias, 'bias']] as const)
    if (p && (p.ndim !== 1 || p.shape[0] !== D)) throw new Error(`addLayerNorm: ${what} ${shapeStr(p.shape)} does not match the last dim of input ${shapeStr(x.shape)}`);
  const dt = x.dtype;
  const fused = enc && x.ndim > 0 && enc.dtypes.includes(dt) && [residual, weight, bias].every((t) => !t || t.dtype === dt);
  if (!fused) return tidy(() => layerNorm(add(x, residual), weight, bias, eps));
  return tidy(() => {
    const [xc, rc] = [contiguous(x), contiguous(residual)];
    const [w, b] = [weight && contiguous(weight), bias && contiguous(bias)];
    const out = emptyLike(xc);
    const s = emptyLike(xc);
    const rows = xc.shape.slice(0, -1);
    const [mean, rstd] = [emptyLike(xc, rows), emptyLike(xc, rows)];
    enc.addLayerNorm(xc, rc, w, b, eps, out, s, mean, rstd);
    if (!needsGrad(x, residual, weight, bias)) return out;
    const saved = [save(s), save(mean), save(rstd), ...(w ? [save(w)] : [])];
    const [ss, ms, rs, ws] = saved;
    const k = backendOf(x).kernels;
    return record('addLayerNorm', out, [x, residual, weight, bias], (g) => {
      const gc = contiguous(g);
      const ds = emptyLike(gc);
      const dw = weight?.requiresGrad ? emptyLike(ss, [D]) : null;
      const db = bias?.requiresGrad ? emptyLike(ss, [D]) : null;
      k.layerNormBackward(ss, ws ?? null, ms, rs, gc, ds, dw, db);
      // both inputs get ds; the second its own handle, so neither receiver adds into the other's buffer
      const dres = residual.requiresGrad ? (x.requiresGrad ? ds.alias() : ds) : null;
      return [x.requiresGrad ? ds : null, dres, dw, db];
    }, saved);
  });
}
