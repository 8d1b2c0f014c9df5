// The native gather / scatter_add / index_select / index_add kernels (native/indexing.cc)
// against the float64 reference: every dim of 1-3-d inputs with sizes 1, 7, 33, 257, int64 and
// int32 indices with negatives (they wrap), index smaller than the input off dim, transposed and
// step-sliced inputs, strided outs, duplicate indices (the adds accumulate in index order), every
// dtype for the selects and the float / integer dtypes for the adds; and errors: an out-of-range index anywhere throws an Error naming the
// op and the value before anything is written. (No per-ISA code here, so no KESTREL_SIMD runs.)
//
// Tolerances: selects move bits (exact). The adds accumulate in the out's dtype in the
// reference's order while the reference accumulates in float64 and rounds once: float32 rtol
// 1e-6 with atol 1e-6 (a few roundings of O(1) values), float64 rtol 1e-14.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as k from '../../src/index.js';
import { assertClose, seeded, seededTensor } from '../helpers.js';

const HAS_CPU = k.hasBackend('cpu');
type Backend = 'cpu' | 'ref';

const base = seededTensor;

/** Integer indices in [-size, size) (negatives wrap), as int64 or int32. */
function indices(shape: number[], size: number, dtype: 'int64' | 'int32', where: Backend, seed: number): k.Tensor {
  return base(shape, 'float64', where, seed, -size, size).to('float64').to(dtype === 'int64' ? 'int64' : 'int32');
}

function compareBoth(what: string, f: (b: Backend) => k.Tensor, tol: { atol?: number; rtol?: number }): void {
  const got = f('cpu');
  const want = f('ref');
  assert.equal(got.dtype, want.dtype, `${what}: dtype`);
  assert.deepEqual([...got.shape], [...want.shape], `${what}: shape`);
  assertClose(got, want, { ...tol, what });
}

const addTol = (dtype: k.DType) => (dtype === 'float64' ? { atol: 1e-14, rtol: 1e-14 } : { atol: 1e-6, rtol: 1e-6 });
const EXACT = { atol: 0, rtol: 0 };

interface Layout { name: string; shape: number[]; view: (t: k.Tensor) => k.Tensor }
function layouts(): Layout[] {
  const out: Layout[] = [];
  for (const n of [1, 7, 33, 257]) {
    out.push({ name: `[${n}]`, shape: [n], view: (t) => t });
    out.push({ name: `[4,${n}]`, shape: [4, n], view: (t) => t });
    out.push({ name: `[3,${n}]^T`, shape: [3, n], view: (t) => t.t() });
    out.push({ name: `[2,${n},3] step`, shape: [2, n, 6], view: (t) => t.slice(2, 1, undefined, 2) });
  }
  return out;
}

function selectGroup(): void {
  for (const L of layouts()) {
    const shape = L.view(base(L.shape, 'float32', 'ref')).shape;
    for (let d = 0; d < shape.length; d++)
      for (const idt of ['int64', 'int32'] as const)
        for (const m of [0, 5, 40]) {
          // index_select: any dtype moves by element size.
          for (const dtype of ['float64', 'bfloat16', 'int32', 'bool'] as const) {
            const f = (b: Backend) => k.indexSelect(L.view(base(L.shape, dtype, b, 2, -9, 9)), d, indices([m], shape[d], idt, b, 3));
            compareBoth(`indexSelect ${dtype} ${L.name} dim ${d} idx ${idt}[${m}]`, f, EXACT);
          }
          // gather: index with the input's rank, at most its size off dim.
          const ishape = shape.map((s, i) => (i === d ? m : Math.max(1, s - 1)));
          for (const dtype of ['float32', 'float16', 'int32'] as const) {
            const f = (b: Backend) => k.gather(L.view(base(L.shape, dtype, b, 4, -9, 9)), d, indices(ishape, shape[d], idt, b, 5));
            compareBoth(`gather ${dtype} ${L.name} dim ${d} idx ${idt}[${ishape}]`, f, EXACT);
          }
        }
  }
  // Embedding: rows of [V, D] at ids of any shape.
  compareBoth('embedding', (b) => k.embedding(indices([3, 17], 50, 'int64', b, 6), base([50, 33], 'float32', b, 7)), EXACT);
}

function addGroup(): void {
  for (const L of layouts()) {
    const shape = L.view(base(L.shape, 'float32', 'ref')).shape;
    for (let d = 0; d < shape.length; d++)
      for (const idt of ['int64', 'int32'] as const)
        for (const m of [0, 5, 40])
          for (const dtype of ['float32', 'float64'] as const) {
            // index_add: src has index's length at dim; duplicates accumulate.
            const sshape = shape.map((s, i) => (i === d ? m : s));
            const fa = (b: Backend) =>
              k.indexAdd(L.view(base(L.shape, dtype, b, 8)), d, indices([m], shape[d], idt, b, 9), base(sshape, dtype, b, 10));
            compareBoth(`indexAdd ${dtype} ${L.name} dim ${d} idx ${idt}[${m}]`, fa, addTol(dtype));
            // scatter_add: index no larger than src; src may be larger (its corner is used).
            const ishape = shape.map((s, i) => (i === d ? m : Math.max(1, s - 1)));
            const srcShape = ishape.map((s) => s + 1);
            const fs = (b: Backend) =>
              k.scatterAdd(L.view(base(L.shape, dtype, b, 11)), d, indices(ishape, shape[d], idt, b, 12), base(srcShape, dtype, b, 13));
            compareBoth(`scatterAdd ${dtype} ${L.name} dim ${d} idx ${idt}[${ishape}]`, fs, addTol(dtype));
          }
  }
  // Into strided outs, directly through the kernels (the op layer clones into a contiguous out).
  const strided = (b: Backend): k.Tensor => {
    const out = base([9, 8], 'float32', b, 14);
    const kern = k.getBackend(b).kernels;
    kern.indexAdd(out.t(), 1, indices([20], 9, 'int64', b, 15), base([8, 20], 'float32', b, 16));
    kern.scatterAdd(out.slice(1, 0, undefined, 2), 0, indices([30, 4], 9, 'int32', b, 17), base([30, 4], 'float32', b, 18));
    return out;
  };
  compareBoth('adds into strided outs', strided, addTol('float32'));
  // Other dtypes: the integers wrap exactly as the reference's stores do; float16 / bfloat16
  // accumulate in float32 and round once (the reference: float64, once), so they may differ by
  // one rounding of the result.
  for (const dtype of ['float16', 'bfloat16', 'int32', 'int64', 'int8'] as const) {
    const tol = dtype === 'float16' ? { atol: 1e-3, rtol: 1e-3 } : dtype === 'bfloat16' ? { atol: 1e-2, rtol: 8e-3 } : EXACT;
    const [lo, hi] = dtype.startsWith('int') ? [-9, 9] : [-1, 1];
    compareBoth(`indexAdd ${dtype}`, (b) => k.indexAdd(base([9, 33], dtype, b, 30, lo, hi).t(), 1, indices([40], 9, 'int64', b, 31), base([33, 40], dtype, b, 32, lo, hi)), tol);
    compareBoth(`scatterAdd ${dtype}`, (b) => k.scatterAdd(base([7, 5], dtype, b, 33, lo, hi), 0, indices([30, 5], 7, 'int32', b, 34), base([30, 6], dtype, b, 35, lo, hi)), tol);
  }
  bigAdds();
}

function bigAdds(): void {
  // Big enough for several threads; embedding backward (index_add over dim 0 with many duplicates).
  compareBoth('indexAdd embedding grad', (b) => k.indexAdd(base([64, 576], 'float32', b, 19), 0, indices([2000], 64, 'int64', b, 20), base([2000, 576], 'float32', b, 21)), addTol('float32'));
  compareBoth('scatterAdd big', (b) => k.scatterAdd(base([300, 200], 'float32', b, 22), 0, indices([600, 200], 300, 'int64', b, 23), base([600, 200], 'float32', b, 24)), addTol('float32'));
}

function errorGroup(): void {
  const kern = k.getBackend('cpu').kernels;
  const t = (shape: number[], dtype: k.DType = 'float32') => k.zeros(shape, { dtype, backend: 'cpu' });
  const idx = (v: number[], dtype: k.DType = 'int64') => k.tensor(v, { dtype, backend: 'cpu' });
  const throwsWith = (f: () => void, re: RegExp) => assert.throws(f, (e: Error) => e instanceof Error && re.test(e.message), `expected ${re}`);
  // Out-of-range indices through the public ops: an Error naming the op and the value.
  throwsWith(() => k.gather(t([3, 4]), 1, idx([0, 4, 1], 'int64').reshape([3, 1])), /gather: index 4 at position 1/);
  throwsWith(() => k.gather(t([3, 4]), 1, idx([-5], 'int32').reshape([1, 1])), /gather: index -5 .* size 4/);
  throwsWith(() => k.indexSelect(t([3, 4]), 0, idx([0, 3])), /index_select: index 3 at position 1 .* size 3/);
  throwsWith(() => k.embedding(idx([1, 2, 99]), t([10, 4])), /index_select: index 99/);
  throwsWith(() => k.scatterAdd(t([3, 4]), 0, idx([0, 1, 7, 2]).reshape([1, 4]), t([1, 4])), /scatter_add: index 7/);
  throwsWith(() => k.indexAdd(t([3, 4]), 1, idx([0, -9]), t([3, 2])), /index_add: index -9/);
  // Nothing is written when any index is bad, even the last one.
  const out = k.ones([4, 3], { backend: 'cpu' });
  throwsWith(() => kern.indexAdd(out, 0, idx([0, 1, 2, 3, 4]), k.ones([5, 3], { backend: 'cpu' })), /index_add: index 4/);
  throwsWith(() => kern.scatterAdd(out, 1, idx([0, 1, 2, 3, 1, 2]).reshape([2, 3]), t([2, 3])), /scatter_add: index 3/);
  assert.deepEqual(out.toArray(), Array.from({ length: 4 }, () => [1, 1, 1]));
  // Shape, dtype and layout mismatches (the kernels' own checks, below the op layer's).
  throwsWith(() => kern.gather(t([3, 4]), 1, idx([0, 1]).reshape([1, 2]), t([2, 1])), /gather: index \[1,2\], out \[2,1\]/);
  throwsWith(() => kern.gather(t([3, 4]), 1, idx([0]).reshape([1, 1]), t([1, 1], 'float64')), /gather: out dtype float64/);
  throwsWith(() => kern.gather(t([3, 4]), 0, t([1, 1]), t([1, 1])), /gather: index has dtype float32/);
  throwsWith(() => kern.gather(t([3, 4]), 2, idx([0]).reshape([1, 1]), t([1, 1])), /gather: dim 2 out of range/);
  throwsWith(() => kern.gather(t([3, 4]), 0, idx([0, 0, 0, 0, 0]).reshape([1, 5]), t([1, 5])), /gather: index \[1,5\] does not fit x \[3,4\]/);
  throwsWith(() => kern.indexSelect(t([3, 4]), 0, idx([0, 1]), t([3, 4])), /index_select: out \[3,4\] must be x \[3,4\] with dim 0 of size 2/);
  throwsWith(() => kern.indexSelect(t([3, 4]), 0, idx([0, 1]).reshape([1, 2]), t([2, 4])), /index_select: index must be 1-d/);
  throwsWith(() => kern.indexAdd(t([3, 4], 'bool'), 0, idx([0]), t([1, 4], 'bool')), /index_add: out has dtype bool/);
  throwsWith(() => kern.scatterAdd(t([3, 4], 'bool'), 0, idx([0]).reshape([1, 1]), t([1, 1], 'bool')), /scatter_add: out has dtype bool/);
  throwsWith(() => kern.indexAdd(t([3, 1]).expand([3, 4]), 0, idx([0]), t([1, 4])), /index_add: out \[3,4\] has overlapping elements/);
  throwsWith(() => kern.scatterAdd(t([3, 4]), 0, idx([0, 1]).reshape([1, 2]), t([1, 3])), /scatter_add: index \[1,2\], src \[1,3\]/);
}

const GROUPS: Record<string, () => void> = { select: selectGroup, add: addGroup, errors: errorGroup };

const skip = HAS_CPU ? false : 'cpu backend unavailable (native addon not built: run npm run build)';
for (const [name, f] of Object.entries(GROUPS)) test(`cpu indexing: ${name}`, { skip }, () => k.tidy(() => f()));
test('cpu indexing: adds on 1 thread', { skip }, async () => {
  const addon = (await import('../../src/backend/addon.js')).loadNative()!;
  addon.setThreads(1);
  try {
    k.tidy(() => bigAdds());
  } finally {
    addon.setThreads(2);
  }
});
