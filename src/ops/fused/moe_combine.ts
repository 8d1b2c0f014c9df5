// The weighted scatter that ends a mixture-of-experts layer (MegaBlocks' scatter; the index_add_ of
// transformers' Mixtral loop): each routed slot's expert output y[s] times its routing weight w[s]
// is added into its token's row. Equals moeCombineComposite, index_add(zeros, 0, token, y * w[:, None]),
// in one pass instead of three (a weighted copy of y, a zero fill, the index_add), and backward
//   dy[s] = w[s] g[token[s]]            dw[s] = Σ_d g[token[s], d] y[s, d]
// in one pass instead of a gather, two products and a row sum. Backends without the kernel (and
// half dtypes) run the composite.
import { backendOf } from '../../backend/index.js';
import { shapeStr } from '../../tensor/layout.js';
import { tidy } from '../../tensor/scope.js';
import type { Tensor } from '../../tensor/tensor.js';
import { zeros } from '../creation.js';
import { emptyLike, inputs, needsGrad, record, save } from '../dispatch.js';
import { mul } from '../elementwise.js';
import { indexAdd } from '../indexing.js';
import { contiguous, unsqueeze } from '../view.js';

function checkArgs(y: Tensor, token: Tensor, w: Tensor, rows: number): void {
  const [S] = y.shape;
  if (y.ndim !== 2 || token.ndim !== 1 || w.ndim !== 1 || token.shape[0] !== S || w.shape[0] !== S)
    throw new Error(`moeCombine: need y [S, D], token [S], w [S]; got ${shapeStr(y.shape)}, ${shapeStr(token.shape)}, ${shapeStr(w.shape)}`);
  if (token.dtype !== 'int64') throw new Error(`moeCombine: token must be int64, got ${token.dtype}`);
  if (w.dtype !== y.dtype) throw new Error(`moeCombine: w is ${w.dtype}, y is ${y.dtype}`);
  if (!Number.isInteger(rows) || rows < 0) throw new Error(`moeCombine: rows must be a non-negative integer, got ${rows}`);
}

/** The three-op form moeCombine equals (and runs where the backend has no kernel). */
export function moeCombineComposite(y: Tensor, token: Tensor, w: Tensor, rows: number): Tensor {
  return tidy(() => indexAdd(zeros([rows, y.shape[1]], { dtype: y.dtype, backend: y.backendName }), 0, token, mul(y, unsqueeze(w, 1))));
}

/**
 * out [rows, D]: out[t] = Σ over slots s with token[s] = t of w[s] · y[s].
 * @example const out = moeCombine(expertOut, tokenOfSlot, slotWeights, numTokens)
 */
export function moeCombine(y: Tensor, token: Tensor, w: Tensor, rows: number): Tensor {
  inputs('moeCombine', y, token, w);
  checkArgs(y, token, w, rows);
  const k = backendOf(y).kernels;
  if (!k.moeCombine || !k.moeCombineBackward || (y.dtype !== 'float32' && y.dtype !== 'float64')) return moeCombineComposite(y, token, w, rows);
  const [yc, tc, wc] = [contiguous(y), contiguous(token), contiguous(w)];
  const out = emptyLike(yc, [rows, y.shape[1]]);
  k.moeCombine(out, tc, yc, wc);
  const res = needsGrad(y, w) ? recordBackward(out, { y, w }, { y: yc, token: tc, w: wc }) : out;
  for (const [c, t] of [[yc, y], [tc, token], [wc, w]]) if (c !== t) c.dispose();
  return res;
}

function recordBackward(out: Tensor, inputs: { y: Tensor; w: Tensor }, c: { y: Tensor; token: Tensor; w: Tensor }): Tensor {
  const [ys, ts, ws] = [save(c.y), save(c.token), save(c.w)];
  const backward = backendOf(out).kernels.moeCombineBackward!;
  return record('moeCombine', out, [inputs.y, null, inputs.w], (g0) => {
    const g = contiguous(g0);
    const dy = inputs.y.requiresGrad ? emptyLike(g, ys.shape) : null;
    const dw = inputs.w.requiresGrad ? emptyLike(g, ws.shape) : null;
    backward(g, ts, ys, ws, dy, dw);
    if (g !== g0) g.dispose();
    return [dy, null, dw];
  }, [ys, ts, ws]);
}
