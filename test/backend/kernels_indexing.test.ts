// The gather / scatter_add / index_select / index_add kernels of every native device (native/indexing.cc,
// native/cuda/kernels/indexing.cu) against the float64 reference: every dim of 1-3-d inputs with
// sizes 1, 7, 33, 257, int64 and int32 indices with negatives (they wrap), index smaller than the
// input off dim, transposed and step-sliced inputs, strided outs, duplicate indices, every dtype for
// the selects (1, 2, 4 and 8-byte elements) and the float / integer dtypes for the adds; and errors:
// an out-of-range index throws an Error naming the op, the value and the dim size. The CPU throws
// before anything is written; cuda checks on the device and throws at the next host read, having
// never followed the bad index (tests read the result inside the assertion).
//
// Tolerances: selects move bits (exact). The adds accumulate in the out's dtype (cpu: in index
// order; cuda: atomics in any order) while the reference accumulates in float64 and rounds once:
// float32 rtol 1e-6 with atol 1e-6 (a few roundings of O(1) values; 5e-6 for the 2000-row adds),
// float64 rtol 1e-14.
import { ALL_DEVICES, type Device, skipUnless } from '../devices.js';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as k from '../../src/index.js';
import { assertClose, seededTensor, withEnv } from '../helpers.js';

type Where = Device | 'ref';

const base = seededTensor;

/** Integer indices in [0, size) (the op layer refuses negatives, as PyTorch does), as int64 or int32. */
const indices = (shape: number[], size: number, dtype: 'int64' | 'int32', where: Where, seed: number): k.Tensor =>
  base(shape, 'float64', where, seed, 0, size).to(dtype);

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

function suite(device: Device): { groups: Record<string, () => void>; bigAdds: () => void } {
  const compare = (what: string, f: (b: Where) => k.Tensor, tol: { atol?: number; rtol?: number }): void => {
    const got = f(device);
    const want = f('ref');
    assert.equal(got.dtype, want.dtype, `${what}: dtype`);
    assertClose(got, want, { ...tol, what: `${device} ${what}` });
  };

  function selects(): void {
    for (const L of layouts()) {
      const shape = L.view(base(L.shape, 'float32', 'ref')).shape;
      for (let d = 0; d < shape.length; d++)
        for (const idt of ['int64', 'int32'] as const)
          for (const m of [0, 5, 40]) {
            // index_select: any dtype moves by element size (8, 2, 4 and 1 bytes).
            for (const dtype of ['float64', 'bfloat16', 'int32', 'bool'] as const) {
              const f = (b: Where) => k.indexSelect(L.view(base(L.shape, dtype, b, 2, -9, 9)), d, indices([m], shape[d], idt, b, 3));
              compare(`indexSelect ${dtype} ${L.name} dim ${d} idx ${idt}[${m}]`, f, EXACT);
            }
            // gather: index with the input's rank, at most its size off dim.
            const ishape = shape.map((s, i) => (i === d ? m : Math.max(1, s - 1)));
            for (const dtype of ['float32', 'float16', 'int64', 'uint8'] as const) {
              const f = (b: Where) => k.gather(L.view(base(L.shape, dtype, b, 4, -9, 9)), d, indices(ishape, shape[d], idt, b, 5));
              compare(`gather ${dtype} ${L.name} dim ${d} idx ${idt}[${ishape}]`, f, EXACT);
            }
          }
    }
    // Embedding: rows of [V, D] at ids of any shape, and its gradient (index_add over dim 0).
    compare('embedding', (b) => k.embedding(indices([3, 17], 50, 'int64', b, 6), base([50, 33], 'float32', b, 7)), EXACT);
    // A strided 1-d index (every other element).
    compare('indexSelect strided index', (b) => k.indexSelect(base([9, 5], 'float32', b, 8), 0, indices([12], 9, 'int32', b, 9).slice(0, 0, undefined, 2)), EXACT);
  }

  function adds(): void {
    for (const L of layouts()) {
      const shape = L.view(base(L.shape, 'float32', 'ref')).shape;
      for (let d = 0; d < shape.length; d++)
        for (const idt of ['int64', 'int32'] as const)
          for (const m of [0, 5, 40])
            for (const dtype of ['float32', 'float64'] as const) {
              // index_add: src has index's length at dim; duplicates accumulate.
              const sshape = shape.map((s, i) => (i === d ? m : s));
              const fa = (b: Where) =>
                k.indexAdd(L.view(base(L.shape, dtype, b, 8)), d, indices([m], shape[d], idt, b, 9), base(sshape, dtype, b, 10));
              compare(`indexAdd ${dtype} ${L.name} dim ${d} idx ${idt}[${m}]`, fa, addTol(dtype));
              // scatter_add: index no larger than src; src may be larger (its corner is used).
              const ishape = shape.map((s, i) => (i === d ? m : Math.max(1, s - 1)));
              const srcShape = ishape.map((s) => s + 1);
              const fs = (b: Where) =>
                k.scatterAdd(L.view(base(L.shape, dtype, b, 11)), d, indices(ishape, shape[d], idt, b, 12), base(srcShape, dtype, b, 13));
              compare(`scatterAdd ${dtype} ${L.name} dim ${d} idx ${idt}[${ishape}]`, fs, addTol(dtype));
            }
    }
    // Into strided outs, directly through the kernels (the op layer clones into a contiguous out).
    const strided = (b: Where): k.Tensor => {
      const out = base([9, 8], 'float32', b, 14);
      const kern = k.getBackend(b).kernels;
      kern.indexAdd(out.t(), 1, indices([20], 9, 'int64', b, 15), base([8, 20], 'float32', b, 16));
      kern.scatterAdd(out.slice(1, 0, undefined, 2), 0, indices([30, 4], 9, 'int32', b, 17), base([30, 4], 'float32', b, 18));
      return out;
    };
    compare('adds into strided outs', strided, addTol('float32'));
    // Other dtypes: the integers wrap exactly as the reference's stores do; float16 / bfloat16
    // accumulate in float32 and round once (the reference: float64, once), so they may differ by
    // one rounding of the result.
    for (const dtype of ['float16', 'bfloat16', 'int32', 'int64', 'int8', 'uint8'] as const) {
      const tol = dtype === 'float16' ? { atol: 1e-3, rtol: 1e-3 } : dtype === 'bfloat16' ? { atol: 1e-2, rtol: 8e-3 } : EXACT;
      const [lo, hi] = dtype.endsWith('int8') || dtype.startsWith('int') ? [-9, 9] : [-1, 1];
      compare(`indexAdd ${dtype}`, (b) => k.indexAdd(base([9, 33], dtype, b, 30, lo, hi).t(), 1, indices([40], 9, 'int64', b, 31), base([33, 40], dtype, b, 32, lo, hi)), tol);
      compare(`scatterAdd ${dtype}`, (b) => k.scatterAdd(base([7, 5], dtype, b, 33, lo, hi), 0, indices([30, 5], 7, 'int32', b, 34), base([30, 6], dtype, b, 35, lo, hi)), tol);
    }
    bigAdds();
  }

  function bigAdds(): void {
    // Embedding backward (index_add over dim 0 with many duplicates) and a big scatter.
    const tol = { atol: 5e-6, rtol: 1e-6 };
    compare('indexAdd embedding grad', (b) => k.indexAdd(base([64, 576], 'float32', b, 19), 0, indices([2000], 64, 'int64', b, 20), base([2000, 576], 'float32', b, 21)), tol);
    compare('scatterAdd big', (b) => k.scatterAdd(base([300, 200], 'float32', b, 22), 0, indices([600, 200], 300, 'int64', b, 23), base([600, 200], 'float32', b, 24)), tol);
  }

  function errors(): void {
    const kern = k.getBackend(device).kernels;
    const t = (shape: number[], dtype: k.DType = 'float32') => k.zeros(shape, { dtype, backend: device });
    const idx = (v: number[], dtype: k.DType = 'int64') => k.tensor(v, { dtype, backend: device });
    const throwsWith = (f: () => unknown, re: RegExp) => assert.throws(f, (e: Error) => e instanceof Error && re.test(e.message), `expected ${re}`);
    // Out-of-range indices through the public ops (the result read, so cuda reports too).
    throwsWith(() => k.gather(t([3, 4]), 1, idx([0, 4, 1], 'int64').reshape([3, 1])).toArray(), /gather: index 4 at position 1 of index \[3,1\] .* size 4/);
    throwsWith(() => k.gather(t([3, 4]), 1, idx([-5], 'int32').reshape([1, 1])).toArray(), /gather: index -5 .* size 4/);
    throwsWith(() => k.indexSelect(t([3, 4]), 0, idx([0, 3])).toArray(), /index_select: index 3 at position 1 .* size 3/);
    throwsWith(() => k.embedding(idx([1, 2, 99]), t([10, 4])).toArray(), /index_select: index 99 at position 2/);
    throwsWith(() => k.scatterAdd(t([3, 4]), 0, idx([0, 1, 7, 2]).reshape([1, 4]), t([1, 4])).toArray(), /scatter_add: index 7/);
    throwsWith(() => k.indexAdd(t([3, 4]), 1, idx([0, -9]), t([3, 2])).toArray(), /index_add: index -9 .* size 4/);
    // Values far out of range (a garbage id) are never followed.
    throwsWith(() => k.indexSelect(t([3, 4]), 0, idx([2 ** 40, -(2 ** 40)])).toArray(), /index_select: index (1099511627776|-1099511627776)/);
    // Empty rows still check their indices.
    throwsWith(() => k.indexSelect(t([3, 0]), 0, idx([0, 5])).toArray(), /index_select: index 5/);
    // After an error the device is usable again, with nothing left to report.
    assert.deepEqual(k.indexSelect(t([3, 2]), 0, idx([2, 0])).toArray(), [[0, 0], [0, 0]]);
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

  return { groups: { selects, adds, errors }, bigAdds };
}

for (const device of ALL_DEVICES)
  describe(`indexing kernels on ${device} vs the float64 reference`, { skip: skipUnless(device) }, () => {
    for (const [name, f] of Object.entries(suite(device).groups)) test(name, () => k.tidy(() => f()));
  });

describe('cpu indexing specifics', { skip: skipUnless('cpu') }, () => {
  test('nothing is written when any index is bad, even the last one', () => {
    k.tidy(() => {
      const kern = k.getBackend('cpu').kernels;
      const idx = (v: number[]) => k.tensor(v, { dtype: 'int64', backend: 'cpu' });
      const out = k.ones([4, 3], { backend: 'cpu' });
      assert.throws(() => kern.indexAdd(out, 0, idx([0, 1, 2, 3, 4]), k.ones([5, 3], { backend: 'cpu' })), /index_add: index 4/);
      assert.throws(() => kern.scatterAdd(out, 1, idx([0, 1, 2, 3, 1, 2]).reshape([2, 3]), k.zeros([2, 3], { backend: 'cpu' })), /scatter_add: index 3/);
      assert.deepEqual(out.toArray(), Array.from({ length: 4 }, () => [1, 1, 1]));
    });
  });
  test('adds on 1 thread', async () => {
    const addon = (await import('../../src/backend/addon.js')).loadNative()!;
    addon.setThreads(1);
    try {
      k.tidy(() => suite('cpu').bigAdds());
    } finally {
      addon.setThreads(2);
    }
  });
});

describe('cuda indexing specifics', { skip: skipUnless('cuda') }, () => {
  const idx = (v: number[]) => k.tensor(v, { dtype: 'int64', backend: 'cuda' });
  test('a bad index is reported at the next host read, after later kernels ran', () => {
    k.tidy(() => {
      const x = k.ones([4, 3], { backend: 'cuda' });
      const y = k.indexSelect(x, 0, idx([1, 7, 2])); // row 1 of y is zeros, nothing else touched
      const z = y.mul(2).add(1);
      assert.throws(() => z.toArray(), /index_select: index 7 at position 1 of index \[3\] is out of range for a dimension of size 4/);
      assert.deepEqual(z.toArray(), [[3, 3, 3], [1, 1, 1], [3, 3, 3]]);
      // the adds skip the bad index and add the rest
      const out = k.zeros([4, 3], { backend: 'cuda' });
      k.getBackend('cuda').kernels.indexAdd(out, 0, idx([0, 9, 3]), k.ones([3, 3], { backend: 'cuda' }));
      assert.throws(() => out.toArray(), /index_add: index 9 at position 1/);
      assert.deepEqual(out.toArray(), [[1, 1, 1], [0, 0, 0], [0, 0, 0], [1, 1, 1]]);
    });
  });
  test('KESTREL_CUDA_SYNC=1 reports it at the launch', () => {
    withEnv('KESTREL_CUDA_SYNC', '1', () =>
      k.tidy(() => {
        assert.throws(() => k.gather(k.ones([2, 2], { backend: 'cuda' }), 0, idx([0, 2]).reshape([1, 2])), /gather: index 2 at position 1/);
      }),
    );
  });
});
