// Indexing primitives (gather / scatterAdd, indexSelect / indexAdd: each the other's VJP) and
// the ops built on them: embedding, cat, stack, split, chunk, tril/triu.
import { type View, backendOf, withLayout } from '../backend/index.js';
import { isFloat } from '../tensor/dtype.js';
import { normDim, shapeStr } from '../tensor/layout.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { arange } from './creation.js';
import { emptyLike, inputs, needsGrad, record, save } from './dispatch.js';
import { compare, mul, sub, to, where } from './elementwise.js';
import { noGrad } from '../tensor/grad_mode.js';
import { clone, narrow, reshape, unsqueeze } from './view.js';

function checkIndex(op: string, index: Tensor): void {
  if (index.dtype !== 'int64' && index.dtype !== 'int32')
    throw new Error(`${op}: index must be int64 or int32, got ${index.dtype}`);
}

/** out[i][j] = x[i][index[i][j]] along dim (torch.gather). */
export function gather(x: Tensor, dim: number, index: Tensor): Tensor {
  inputs('gather', x, index);
  checkIndex('gather', index);
  const d = normDim(dim, x.ndim, 'gather');
  if (index.ndim !== x.ndim || index.shape.some((s, i) => i !== d && s > x.shape[i]))
    throw new Error(`gather: index ${shapeStr(index.shape)} does not fit input ${shapeStr(x.shape)} along dim ${dim}`);
  const out = emptyLike(x, index.shape);
  backendOf(x).kernels.gather(x, d, index, out);
  if (!isFloat(x.dtype)) return out;
  const is = save(index);
  const shape = x.shape;
  return record('gather', out, [x], (g) => [scatterAdd(zerosOf(g, shape), d, is, g)], [is]);
}

function zerosOf(like: Tensor, shape: readonly number[]): Tensor {
  const z = emptyLike(like, shape);
  backendOf(like).kernels.fill(z, 0);
  return z;
}

/** base with src added at index along dim (out-of-place torch.scatter_add). */
export function scatterAdd(base: Tensor, dim: number, index: Tensor, src: Tensor): Tensor {
  inputs('scatterAdd', base, index, src);
  checkIndex('scatterAdd', index);
  const d = normDim(dim, base.ndim, 'scatterAdd');
  if (index.ndim !== base.ndim || src.ndim !== base.ndim || index.shape.some((s, i) => s > src.shape[i] || (i !== d && s > base.shape[i])))
    throw new Error(`scatterAdd: index ${shapeStr(index.shape)}, src ${shapeStr(src.shape)} and base ${shapeStr(base.shape)} do not fit`);
  const out = clone(base);
  backendOf(base).kernels.scatterAdd(out, d, index, corner(src, index.shape));
  if (!needsGrad(base, src)) return out;
  const is = save(index);
  return record('scatterAdd', out, [base, src], (g) => [g, gather(g, d, is)], [is]);
}

/** The leading corner of t with the given shape, as a kernel view. */
function corner(t: Tensor, shape: readonly number[]): View {
  let l = t.layout;
  shape.forEach((s, i) => (l = l.narrow(i, 0, s)));
  return withLayout(t, l);
}

/** Rows of x at the 1-d index along dim (torch.index_select). */
export function indexSelect(x: Tensor, dim: number, index: Tensor): Tensor {
  inputs('indexSelect', x, index);
  checkIndex('indexSelect', index);
  if (index.ndim !== 1) throw new Error(`indexSelect: index must be 1-d, got ${shapeStr(index.shape)}`);
  const d = normDim(dim, x.ndim, 'indexSelect');
  const shape = [...x.shape];
  shape[d] = index.shape[0];
  const out = emptyLike(x, shape);
  backendOf(x).kernels.indexSelect(x, d, index, out);
  if (!isFloat(x.dtype)) return out;
  const is = save(index);
  const xshape = x.shape;
  return record('indexSelect', out, [x], (g) => [scatterRows(g, xshape, d, is, g)], [is]);
}

/** zeros(shape) with src added at index along dim: one buffer (an embedding's [V, D] gradient), not indexAdd's zeros + copy. */
function scatterRows(like: Tensor, shape: readonly number[], dim: number, index: Tensor, src: Tensor): Tensor {
  const out = zerosOf(like, shape);
  backendOf(out).kernels.indexAdd(out, dim, index, src);
  return out;
}

/** base with src[i] added at row index[i] along dim (out-of-place torch.index_add). */
export function indexAdd(base: Tensor, dim: number, index: Tensor, src: Tensor): Tensor {
  inputs('indexAdd', base, index, src);
  checkIndex('indexAdd', index);
  const d = normDim(dim, base.ndim, 'indexAdd');
  if (index.ndim !== 1 || src.ndim !== base.ndim || src.shape[d] !== index.shape[0] || src.shape.some((s, i) => i !== d && s !== base.shape[i]))
    throw new Error(`indexAdd: src ${shapeStr(src.shape)} and index ${shapeStr(index.shape)} do not fit base ${shapeStr(base.shape)} along dim ${dim}`);
  const out = clone(base);
  backendOf(base).kernels.indexAdd(out, d, index, src);
  if (!needsGrad(base, src)) return out;
  const is = save(index);
  return record('indexAdd', out, [base, src], (g) => [g, indexSelect(g, d, is)], [is]);
}

/**
 * Rows of weight [V, D] at integer ids of any shape -> [...ids.shape, D] (torch.nn.functional.embedding).
 * The row at paddingIdx gets no gradient (nn.Embedding's padding_idx).
 */
export function embedding(ids: Tensor, weight: Tensor, paddingIdx: number | null = null): Tensor {
  if (weight.ndim !== 2) throw new Error(`embedding: weight must be [num_embeddings, dim], got ${shapeStr(weight.shape)}`);
  const shape = [...ids.shape, weight.shape[1]];
  return tidy(() => {
    const flat = reshape(ids, [-1]);
    if (!needsGrad(weight)) return reshape(indexSelect(weight, 0, flat), shape);
    const out = noGrad(() => indexSelect(weight, 0, flat));
    const is = save(flat);
    const keepRows = paddingIdx === null ? null : save(noGrad(() => unsqueeze(to(compare('ne', flat, paddingIdx), weight.dtype), 1)));
    const rows = (g: Tensor): Tensor => (keepRows ? mul(g, keepRows) : g);
    const wshape = weight.shape;
    // a tied weight (the head's gradient already summed) takes the rows in place: no [V, D] of zeros
    const addInto = (dst: Tensor, g: Tensor): boolean => {
      if (g.dtype !== dst.dtype || !(dst.dtype === 'float32' || dst.dtype === 'float64')) return false;
      backendOf(dst).kernels.indexAdd(dst, 0, is, rows(g));
      return true;
    };
    return reshape(record('embedding', out, [weight], (g) => [scatterRows(g, wshape, 0, is, rows(g))], keepRows ? [is, keepRows] : [is], { addInto }), shape);
  });
}

/** Concatenation along dim (torch.cat). */
export function cat(tensors: readonly Tensor[], dim = 0): Tensor {
  if (tensors.length === 0) throw new Error('cat: needs at least one tensor');
  inputs('cat', ...tensors);
  const first = tensors[0];
  const d = normDim(dim, first.ndim, 'cat');
  for (const t of tensors)
    if (t.ndim !== first.ndim || t.dtype !== first.dtype || t.shape.some((s, i) => i !== d && s !== first.shape[i]))
      throw new Error(`cat: ${shapeStr(t.shape)} (${t.dtype}) does not match ${shapeStr(first.shape)} (${first.dtype}) outside dim ${dim}`);
  const sizes = tensors.map((t) => t.shape[d]);
  const shape = [...first.shape];
  shape[d] = sizes.reduce((a, b) => a + b, 0);
  const out = emptyLike(first, shape);
  const k = backendOf(first).kernels;
  let offset = 0;
  for (const t of tensors) {
    k.copy(t, withLayout(out, out.layout.narrow(d, offset, t.shape[d])));
    offset += t.shape[d];
  }
  if (!isFloat(first.dtype)) return out;
  return record('cat', out, tensors, (g) => {
    let o = 0;
    return sizes.map((s) => narrow(g, d, (o += s) - s, s));
  });
}

/** Joins tensors of one shape along a new dim (torch.stack). */
export function stack(tensors: readonly Tensor[], dim = 0): Tensor {
  if (tensors.length === 0) throw new Error('stack: needs at least one tensor');
  return tidy(() => cat(tensors.map((t) => unsqueeze(t, dim)), dim));
}

/** Views of consecutive pieces of `size` along dim (the last may be smaller) (torch.split). */
export function split(x: Tensor, size: number | readonly number[], dim = 0): Tensor[] {
  const d = normDim(dim, x.ndim, 'split');
  const n = x.shape[d];
  const sizes = typeof size === 'number' ? Array.from({ length: Math.ceil(n / size) }, (_, i) => Math.min(size, n - i * size)) : [...size];
  if (sizes.reduce((a, b) => a + b, 0) !== n) throw new Error(`split: sizes [${sizes.join(', ')}] do not add up to ${n}`);
  let o = 0;
  return sizes.map((s) => narrow(x, d, (o += s) - s, s));
}

/** `chunks` nearly equal views along dim (torch.chunk). */
export function chunk(x: Tensor, chunks: number, dim = 0): Tensor[] {
  const n = x.shape[normDim(dim, x.ndim, 'chunk')];
  return split(x, Math.ceil(n / chunks), dim);
}

function triangle(x: Tensor, diagonal: number, upper: boolean): Tensor {
  if (x.ndim < 2) throw new Error(`${upper ? 'triu' : 'tril'}: needs at least 2 dims, got ${shapeStr(x.shape)}`);
  const [R, C] = x.shape.slice(-2);
  return tidy(() => {
    const rows = reshape(arange(R, undefined, 1, { backend: x.backendName }), [R, 1]);
    const cols = arange(C, undefined, 1, { backend: x.backendName });
    const offset = sub(cols, rows); // j - i
    const keep = upper ? compare('ge', offset, diagonal) : compare('le', offset, diagonal);
    return where(keep, x, 0);
  });
}

/** Lower triangle (j - i <= diagonal), zeros elsewhere (torch.tril). */
export const tril = (x: Tensor, diagonal = 0): Tensor => triangle(x, diagonal, false);
/** Upper triangle (j - i >= diagonal) (torch.triu). */
export const triu = (x: Tensor, diagonal = 0): Tensor => triangle(x, diagonal, true);
