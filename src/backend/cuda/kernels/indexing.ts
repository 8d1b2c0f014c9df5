// gather, scatterAdd, indexSelect and indexAdd on the GPU (native/cuda/kernels/indexing.cu) with
// the CPU kernels' checks and messages (native/indexing.cc). Index values are checked on the
// device and an out-of-range one is raised at the next host read (../index_errors.ts), so the
// per-step embedding lookup and gradient never wait for the device. The adds into float16 /
// bfloat16 accumulate in a float32 copy of out rounded back once, as the CPU does.
import { type DType, dtypeBytes } from '../../../tensor/dtype.js';
import { Layout } from '../../../tensor/layout.js';
import type { Kernels, View } from '../../kernels.js';
import { cudaContext } from '../context.js';
import { dims } from '../checks.js';
import { SUFFIX } from '../dtypes.js';
import { type IndexOp, afterIndexLaunch, indexErrorSlot, indexOpCode } from '../index_errors.js';
import { type Params, collapse, devicePointer, gridFor, launch, newParams } from '../launch.js';
import { cudaKernel } from '../modules.js';
import { scratchStorage } from '../storage.js';
import { copyKernels } from './copy.js';

const prod = (s: readonly number[]): number => s.reduce((p, x) => p * x, 1);
const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((s, i) => s === b[i]);

function checkIndexDtype(op: IndexOp, index: View): void {
  if (index.dtype !== 'int64' && index.dtype !== 'int32')
    throw new Error(`${op}: index has dtype ${index.dtype} (expected int64 or int32)`);
}

function checkDim(op: IndexOp, dim: number, v: View): void {
  if (!Number.isInteger(dim) || dim < 0 || dim >= Math.max(v.layout.ndim, 1))
    throw new Error(`${op}: dim ${dim} out of range for ${dims(v.layout.shape)}`);
}

/** index no larger than v off dim (torch allows a larger input than index). */
function checkFits(op: IndexOp, index: View, v: View, vn: string, dim: number): void {
  v.layout.shape.forEach((s, d) => {
    if (d !== dim && index.layout.shape[d] > s)
      throw new Error(`${op}: index ${dims(index.layout.shape)} does not fit ${vn} ${dims(v.layout.shape)} along dim ${d}`);
  });
}

/** An in-place out must not have two positions on one element. */
function checkNoOverlap(op: IndexOp, out: View): void {
  const { shape, strides } = out.layout;
  shape.forEach((s, d) => {
    if (s > 1 && strides[d] === 0) throw new Error(`${op}: out ${dims(shape)} has overlapping elements (stride 0 on dim ${d})`);
  });
}

/** A 1-d index against v (x or out) and w (out or src), which differ only at dim. */
function checkSelect(op: IndexOp, dim: number, index: View, v: View, vn: string, w: View, wn: string): void {
  checkIndexDtype(op, index);
  if (index.layout.ndim !== 1) throw new Error(`${op}: index must be 1-d, got ${dims(index.layout.shape)}`);
  checkDim(op, dim, v);
  const [vs, ws, n] = [v.layout.shape, w.layout.shape, index.layout.shape[0]];
  if (vs.length !== ws.length || vs.length === 0 || ws.some((s, d) => s !== (d === dim ? n : vs[d])))
    throw new Error(`${op}: ${wn} ${dims(ws)} must be ${vn} ${dims(vs)} with dim ${dim} of size ${n}`);
  if (v.dtype !== w.dtype) throw new Error(`${op}: ${vn} dtype ${v.dtype} differs from ${wn} ${w.dtype}`);
}

const ADD_SUFFIX: Partial<Record<DType, string>> = { float32: 'f32', float64: 'f64', int32: 'i32', int64: 'i64', int8: 'i8', uint8: 'u8' };

/**
 * Runs an add into out: in place for float32/float64 and the integers; float16/bfloat16 through
 * a float32 scratch copy of out (the kernel adds the 16-bit source into it), rounded back once.
 */
function withAddTarget(op: IndexOp, out: View, run: (target: View, suffix: string) => void): void {
  const direct = ADD_SUFFIX[out.dtype];
  if (direct) return run(out, direct);
  if (out.dtype !== 'float16' && out.dtype !== 'bfloat16')
    throw new Error(`${op}: out has dtype ${out.dtype} (expected a float or integer dtype)`);
  const scratch = scratchStorage(cudaContext().addon, 'float32', out.layout.numel);
  try {
    const target: View = { storage: scratch, layout: new Layout([...out.layout.shape]), dtype: 'float32' };
    copyKernels.copy(out, target);
    run(target, `f32_from_${SUFFIX[out.dtype]}`);
    copyKernels.copy(target, out);
  } finally {
    scratch.release();
  }
}

/** 1 for an int64 index, 0 for int32 (the kernels read either). */
const wide = (index: View): number => (index.dtype === 'int64' ? 1 : 0);

/** Appends the device error record and this launch's id, launches, and reports in sync mode. */
function launchIndexed(fn: string, p: Params, index: View, grid: number, block: number): void {
  const slot = indexErrorSlot(index.layout.shape);
  p.ptr(slot.ptr).i64(slot.id);
  launch(cudaKernel('indexing', fn), p, { grid, block });
  afterIndexLaunch();
}

/** Checks every index against size when no row of the real kernel will read them (empty operands). */
function checkOnly(op: IndexOp, index: View, size: number): void {
  const n = index.layout.numel;
  if (n === 0) return;
  const c = collapse(index.layout.shape, [index.layout.strides]);
  const p = newParams().view_(index, 'index').i32(wide(index)).strided(c.shape, c.strides[0]).i64(n).i64(size).i32(indexOpCode(op));
  launchIndexed('index_check', p, index, gridFor(n), 256);
}

/** The widest unit (16, 8 or 4 bytes, else the element) dividing a row's bytes, the addresses and the row strides (bytes). */
function moveUnit(es: number, rowBytes: number, addresses: number[], strideBytes: number[]): number {
  for (const unit of [16, 8, 4]) {
    if (unit <= es) break;
    if ([rowBytes, ...addresses, ...strideBytes].every((b) => b % unit === 0)) return unit;
  }
  return es;
}

/** Threads per row: a power of two covering a row's elements, at most the block. */
const threadsPerRow = (inner: number): number => Math.min(256, 2 ** Math.ceil(Math.log2(Math.max(inner, 1))));

/** v's dims before and after dim, each collapsed (shared with w's strides when given). */
function around(dim: number, v: View, w?: View) {
  const { shape } = v.layout;
  const strides = [v.layout.strides, ...(w ? [w.layout.strides] : [])];
  const outer = collapse(shape.slice(0, dim), strides.map((s) => s.slice(0, dim)));
  const inner = collapse(shape.slice(dim + 1), strides.map((s) => s.slice(dim + 1)));
  return { outer, inner, outerN: prod(shape.slice(0, dim)), innerN: prod(shape.slice(dim + 1)) };
}

export const indexingKernels: Pick<Kernels, 'gather' | 'scatterAdd' | 'indexSelect' | 'indexAdd'> = {
  gather(x, dim, index, out) {
    checkIndexDtype('gather', index);
    checkDim('gather', dim, x);
    const [xs, is] = [x.layout.shape, index.layout.shape];
    if (is.length !== xs.length || !sameShape(is, out.layout.shape))
      throw new Error(`gather: index ${dims(is)}, out ${dims(out.layout.shape)} and x ${dims(xs)} must have one rank, and out the index's shape`);
    checkFits('gather', index, x, 'x', dim);
    if (out.dtype !== x.dtype) throw new Error(`gather: out dtype ${out.dtype} differs from x ${x.dtype}`);
    if (!out.layout.isContiguous()) throw new Error(`gather: out ${dims(out.layout.shape)} must be contiguous`);
    const n = out.layout.numel;
    if (n === 0) return;
    const size = xs.length ? xs[dim] : 1;
    const xdim = xs.length ? x.layout.strides[dim] : 0;
    const xg = x.layout.strides.map((s, d) => (d === dim ? 0 : s));
    const c = collapse(is, [index.layout.strides, xg]);
    const p = newParams().view_(x, 'x').strided(c.shape, c.strides[1]).i64(xdim).i64(size)
      .view_(index, 'index').i32(wide(index)).strided(c.shape, c.strides[0]).view_(out, 'out').i64(n);
    launchIndexed(`gather_b${dtypeBytes(x.dtype)}`, p, index, gridFor(n), 256);
  },

  scatterAdd(out, dim, index, src) {
    checkIndexDtype('scatter_add', index);
    checkDim('scatter_add', dim, out);
    if (src.dtype !== out.dtype) throw new Error(`scatter_add: src dtype ${src.dtype} differs from out ${out.dtype}`);
    const [os, is] = [out.layout.shape, index.layout.shape];
    if (is.length !== os.length || !sameShape(is, src.layout.shape))
      throw new Error(`scatter_add: index ${dims(is)}, src ${dims(src.layout.shape)} and out ${dims(os)} must have one rank, and src the index's shape`);
    checkFits('scatter_add', index, out, 'out', dim);
    checkNoOverlap('scatter_add', out);
    const n = index.layout.numel;
    if (n === 0) return;
    if (os.length === 0) throw new Error('scatter_add: out must have at least one dim');
    withAddTarget('scatter_add', out, (target, sfx) => {
      const og = target.layout.strides.map((s, d) => (d === dim ? 0 : s));
      const c = collapse(is, [index.layout.strides, og, src.layout.strides]);
      const p = newParams().view_(target, 'out').strided(c.shape, c.strides[1]).i64(target.layout.strides[dim]).i64(os[dim])
        .view_(index, 'index').i32(wide(index)).strided(c.shape, c.strides[0]).view_(src, 'src').strided(c.shape, c.strides[2]).i64(n);
      launchIndexed(`scatter_add_${sfx}`, p, index, gridFor(n), 256);
    });
  },

  indexSelect(x, dim, index, out) {
    checkSelect('index_select', dim, index, x, 'x', out, 'out');
    if (!out.layout.isContiguous()) throw new Error(`index_select: out ${dims(out.layout.shape)} must be contiguous`);
    const size = x.layout.shape[dim];
    const n = index.layout.shape[0];
    const { outer, inner, outerN, innerN } = around(dim, x);
    if (outerN * n * innerN === 0) return checkOnly('index_select', index, size);
    // contiguous rows move in the widest aligned unit (16 bytes for a float32 row of 4k floats)
    const es = dtypeBytes(x.dtype);
    const unit = inner.shape.length <= 1 && (inner.strides[0]?.[0] ?? 1) === 1
      ? moveUnit(es, innerN * es, [devicePointer(x, 'x'), devicePointer(out, 'out')], [x.layout.strides[dim], ...outer.strides[0]].map((s) => s * es))
      : es;
    const [w, scale] = [(innerN * es) / unit, es / unit];
    const tpr = threadsPerRow(w);
    const rows = outerN * n;
    const p = newParams().view_(x, 'x').strided(outer.shape, outer.strides[0].map((s) => s * scale)).i64(x.layout.strides[dim] * scale)
      .strided(unit === es ? inner.shape : [w], unit === es ? inner.strides[0] : [1]).i64(size)
      .view_(index, 'index').i32(wide(index)).i64(index.layout.strides[0]).i64(n)
      .view_(out, 'out').i64(rows).i64(w).i32(tpr);
    launchIndexed(`index_select_b${unit}`, p, index, gridFor(rows * tpr), 256);
  },

  indexAdd(out, dim, index, src) {
    checkSelect('index_add', dim, index, out, 'out', src, 'src');
    checkNoOverlap('index_add', out);
    const size = out.layout.shape[dim];
    const n = index.layout.shape[0];
    if (src.layout.numel === 0) return checkOnly('index_add', index, size);
    withAddTarget('index_add', out, (target, sfx) => {
      const { outer, inner, outerN, innerN } = around(dim, target, src);
      const tpr = threadsPerRow(innerN);
      const rows = outerN * n;
      const p = newParams().view_(target, 'out').strided(outer.shape, outer.strides[0]).i64(target.layout.strides[dim])
        .strided(inner.shape, inner.strides[0]).i64(size).view_(index, 'index').i32(wide(index)).i64(index.layout.strides[0]).i64(n)
        .view_(src, 'src').strided(outer.shape, outer.strides[1]).i64(src.layout.strides[dim]).strided(inner.shape, inner.strides[1])
        .i64(rows).i64(innerN).i32(tpr);
      launchIndexed(`index_add_${sfx}`, p, index, gridFor(rows * tpr), 256);
    });
  },
};
