// View ops: new layouts over the same storage (no copy), each with its backward. contiguous()
// and clone() are the copies.
import { backendOf, withLayout } from '../backend/index.js';
import { Layout, type Shape, normDim, numel, shapeStr } from '../tensor/layout.js';
import { Tensor } from '../tensor/tensor.js';
import { empty, emptyLike, inputs, record } from './dispatch.js';
import { sumToShape } from './reduce.js';

function viewOf(op: string, x: Tensor, layout: Layout, backward: (g: Tensor) => Tensor): Tensor {
  inputs(op, x);
  const out = new Tensor(x.storage.retain(), layout);
  return record(op, out, [x], (g) => [backward(g)]);
}

/**
 * The requested shape with its -1 filled in (torch.reshape's rules): sizes are integers >= 0, at
 * most one is -1, and a -1 next to a 0 is refused (it could be anything).
 */
function resolveShape(shape: readonly number[], from: Shape, op: string): number[] {
  const n = numel(from);
  const fail = (why: string): Error => new Error(`${op}: shape ${shapeStr(shape)} is invalid for ${n} elements (input ${shapeStr(from)}): ${why}`);
  const out = [...shape];
  let infer = -1;
  out.forEach((s, i) => {
    if (s === -1 && infer >= 0) throw fail('only one dimension can be -1');
    if (s === -1) infer = i;
    else if (!Number.isInteger(s) || s < 0) throw fail(`size ${s} at dim ${i} (sizes must be integers >= 0, or a single -1)`);
  });
  if (infer >= 0) {
    out[infer] = 1;
    const rest = numel(out);
    if (rest === 0) throw fail('the -1 cannot be inferred next to a size-0 dim');
    if (n % rest !== 0) throw fail(`${n} elements do not divide into rows of ${rest}`);
    out[infer] = n / rest;
  }
  if (numel(out) !== n) throw fail(`that shape holds ${numel(out)} elements`);
  return out;
}

/** Same elements, new shape; a view when the strides allow it, else a copy (torch.reshape). */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const target = resolveShape(shape, x.shape, 'reshape');
  const layout = x.layout.reshape(target);
  const src = x.shape;
  if (layout) return viewOf('reshape', x, layout, (g) => reshape(g, src));
  const c = contiguous(x);
  const out = reshape(c, target);
  c.dispose();
  return out;
}

/** Like reshape, but throws instead of copying (torch.view). */
export function view(x: Tensor, shape: readonly number[]): Tensor {
  const target = resolveShape(shape, x.shape, 'view');
  const layout = x.layout.reshape(target);
  if (!layout)
    throw new Error(`view: ${shapeStr(x.shape)} with strides ${shapeStr(x.strides)} cannot be viewed as ${shapeStr(target)}; use reshape()`);
  const src = x.shape;
  return viewOf('view', x, layout, (g) => reshape(g, src));
}

export function permute(x: Tensor, dims: readonly number[]): Tensor {
  const layout = x.layout.permute(dims);
  const norm = dims.map((d) => normDim(d, x.ndim, 'permute'));
  const inverse = norm.map((_, i) => norm.indexOf(i));
  return viewOf('permute', x, layout, (g) => permute(g, inverse));
}

export function transpose(x: Tensor, dim0 = -2, dim1 = -1): Tensor {
  const dims = x.shape.map((_, i) => i);
  const a = normDim(dim0, x.ndim, 'transpose');
  const b = normDim(dim1, x.ndim, 'transpose');
  [dims[a], dims[b]] = [dims[b], dims[a]];
  return permute(x, dims);
}

/** Writes g into a zero tensor of `shape` through the view `place` makes of it (the VJP of slicing). */
function embed(g: Tensor, shape: Shape, place: (l: Layout) => Layout): Tensor {
  const out = empty(shape, g.dtype, { backend: backendOf(g), zero: true });
  const dst = withLayout(out, place(out.layout));
  backendOf(g).kernels.copy(g, dst);
  return out;
}

export function narrow(x: Tensor, dim: number, start: number, length: number): Tensor {
  const d = normDim(dim, x.ndim, 'narrow');
  if (start < 0) start += x.shape[d];
  const place = (l: Layout): Layout => l.narrow(d, start, length);
  const src = x.shape;
  return viewOf('narrow', x, place(x.layout), (g) => embed(g, src, place));
}

/** Elements start, start+step, ... below end along dim (Python's x[start:end:step]). */
export function slice(x: Tensor, dim: number, start = 0, end?: number, step = 1): Tensor {
  const d = normDim(dim, x.ndim, 'slice');
  const size = x.shape[d];
  const clampIdx = (i: number): number => Math.min(Math.max(i < 0 ? i + size : i, 0), size);
  const s = clampIdx(start);
  const e = clampIdx(end ?? size);
  if (!Number.isInteger(step) || step < 1) throw new Error(`slice: step must be a positive integer, got ${step}`);
  const len = Math.max(0, Math.ceil((e - s) / step));
  const place = (l: Layout): Layout => {
    const n = l.narrow(d, s, len === 0 ? 0 : (len - 1) * step + 1);
    const shape = [...n.shape];
    const strides = [...n.strides];
    shape[d] = len;
    strides[d] *= step;
    return new Layout(shape, strides, n.offset);
  };
  const src = x.shape;
  return viewOf('slice', x, place(x.layout), (g) => embed(g, src, place));
}

/** The slice at `index` along dim, with that dim removed. */
export function select(x: Tensor, dim: number, index: number): Tensor {
  const d = normDim(dim, x.ndim, 'select');
  const i = index < 0 ? index + x.shape[d] : index;
  if (i < 0 || i >= x.shape[d]) throw new Error(`select: index ${index} out of range for dim ${dim} of size ${x.shape[d]}`);
  const n = narrow(x, d, i, 1);
  const out = squeeze(n, d);
  n.dispose();
  return out;
}

/** Broadcasts size-1 dims (and new leading dims) to shape without copying; -1 keeps a size. */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  const lead = shape.length - x.ndim;
  const target = shape.map((s, i) => (s === -1 ? x.shape[i - lead] : s));
  if (target.every((s, i) => s === x.shape[i]) && target.length === x.ndim) return viewOf('expand', x, x.layout, (g) => g);
  const src = x.shape;
  return viewOf('expand', x, x.layout.expand(target), (g) => sumToShape(g, src));
}

export function squeeze(x: Tensor, dim?: number): Tensor {
  const dims = dim === undefined ? x.shape.map((_, i) => i) : [normDim(dim, x.ndim, 'squeeze')];
  const keep = x.shape.map((s, i) => !(s === 1 && dims.includes(i)));
  const layout = new Layout(x.shape.filter((_, i) => keep[i]), x.strides.filter((_, i) => keep[i]), x.layout.offset);
  const src = x.shape;
  return viewOf('squeeze', x, layout, (g) => reshape(g, src));
}

export function unsqueeze(x: Tensor, dim: number): Tensor {
  const d = normDim(dim, x.ndim + 1, 'unsqueeze');
  const shape = [...x.shape];
  const strides = [...x.strides];
  shape.splice(d, 0, 1);
  strides.splice(d, 0, d < x.ndim ? x.strides[d] * x.shape[d] : 1);
  const src = x.shape;
  return viewOf('unsqueeze', x, new Layout(shape, strides, x.layout.offset), (g) => reshape(g, src));
}

export function flatten(x: Tensor, startDim = 0, endDim = -1): Tensor {
  if (x.ndim === 0) return reshape(x, [1]);
  const s = normDim(startDim, x.ndim, 'flatten');
  const e = normDim(endDim, x.ndim, 'flatten');
  const shape = [...x.shape.slice(0, s), numel(x.shape.slice(s, e + 1)), ...x.shape.slice(e + 1)];
  return reshape(x, shape);
}

/** A contiguous tensor with x's values: x itself viewed again when already contiguous, else a copy. */
export function contiguous(x: Tensor): Tensor {
  if (x.isContiguous()) return viewOf('contiguous', x, x.layout, (g) => g);
  return clone(x);
}

/** A contiguous copy. */
export function clone(x: Tensor): Tensor {
  inputs('clone', x);
  const out = emptyLike(x);
  backendOf(x).kernels.copy(x, out);
  return record('clone', out, [x], (g) => [g]);
}
