// The native reduce (sum / max / min, keepdim) and arg_reduce (argmax / argmin) kernels
// (native/reduce.cc) against the float64 reference: every dim subset of 1-3-d inputs with sizes
// 1, 7, 33, 257, scalars and empty dims, transposed / step-sliced / expanded inputs, the
// inner-row, column-block and split-across-threads paths, NaN and infinities, ties, and bad
// arguments. The AVX2 and baseline paths run in child processes with KESTREL_SIMD set.
//
// Tolerances: float32 sums accumulate in double, so they match the reference's float64 sum
// rounded to float32 up to the summation order (rtol 2.4e-7, 2 ulp); float64 sums rtol 1e-13;
// max/min/argmax/argmin and integer sums are exact.
import { ALL_DEVICES, type Device, skipUnless } from '../devices.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import * as k from '../../src/index.js';
import { assertClose, seeded, seededTensor, runChild } from '../helpers.js';

const HAS_CPU = k.hasBackend('cpu');
const CHILD = process.env.KESTREL_REDUCE_CHILD === '1';
type Backend = Device | 'ref';
/** The device the groups below run on (set by each test before it runs them). */
let DEV: Device = 'cpu';

const base = seededTensor;

function compareBoth(what: string, f: (b: Backend) => k.Tensor, tol: { atol?: number; rtol?: number }): void {
  const got = f(DEV);
  const want = f('ref');
  assert.equal(got.dtype, want.dtype, `${what}: dtype`);
  assert.deepEqual([...got.shape], [...want.shape], `${what}: shape`);
  if (got.dtype === 'int64') {
    assert.deepEqual(got.toArray(), want.toArray(), what);
    return;
  }
  assertClose(got, want, { ...tol, what });
}

function sumTol(dtype: k.DType): { atol: number; rtol: number } {
  return dtype === 'float64' ? { atol: 1e-14, rtol: 1e-13 } : dtype === 'float32' ? { atol: 1e-6, rtol: 2.4e-7 } : { atol: 0, rtol: 0 };
}

interface Layout { name: string; shape: number[]; view: (t: k.Tensor) => k.Tensor }

function layouts(): Layout[] {
  const out: Layout[] = [{ name: 'scalar', shape: [], view: (t) => t }];
  for (const n of [1, 7, 33, 257]) {
    out.push({ name: `[${n}]`, shape: [n], view: (t) => t });
    out.push({ name: `[5,${n}]`, shape: [5, n], view: (t) => t });
    out.push({ name: `[3,${n}]^T`, shape: [3, n], view: (t) => t.t() });
    out.push({ name: `[2,${n},3]`, shape: [2, n, 3], view: (t) => t });
    out.push({ name: `[4,${n},6] permuted`, shape: [4, n, 6], view: (t) => t.permute([2, 0, 1]) });
    out.push({ name: `[${n},3] step 2`, shape: [n, 6], view: (t) => t.slice(1, 0, undefined, 2) });
    out.push({ name: `[1,${n}]->[3,${n}]`, shape: [1, n], view: (t) => t.expand([3, n]) });
  }
  return out;
}

/** Every subset of dims (as lists), plus undefined (all). */
function dimSets(ndim: number): (number[] | undefined)[] {
  const out: (number[] | undefined)[] = [undefined];
  for (let m = 0; m < 1 << ndim; m++) out.push([...Array(ndim).keys()].filter((d) => m & (1 << d)));
  return out;
}

function reduceGroup(): void {
  for (const L of layouts())
    for (const dims of dimSets(L.shape.length)) {
      for (const dtype of ['float32', 'float64', 'int64'] as const) {
        const what = `sum ${dtype} ${L.name} dims ${dims}`;
        compareBoth(what, (b) => k.sum(L.view(base(L.shape, dtype, b, 2, -50, 50)), dims, true), sumTol(dtype));
      }
      for (const dtype of ['float32', 'float64', 'int32', 'int64'] as const)
        for (const op of ['max', 'min'] as const) {
          if (dims?.length === 0) continue;
          const f = (b: Backend) => { const x = L.view(base(L.shape, dtype, b, 3, -20, 20)); return op === 'max' ? k.max(x, dims, true) : k.min(x, dims, true); };
          compareBoth(`${op} ${dtype} ${L.name} dims ${dims}`, f, { atol: 0, rtol: 0 });
        }
    }
  // max / min / argmax / argmin of the storage-only dtypes (the op layer passes them through).
  for (const L of layouts().slice(0, 15))
    for (const dtype of ['float16', 'bfloat16', 'int8', 'uint8', 'bool'] as const) {
      const nd = L.view(base(L.shape, 'float32', 'ref')).ndim;
      for (const dims of [undefined, ...[...Array(nd).keys()].map((d) => [d])]) {
        const x = (b: Backend) => L.view(base(L.shape, dtype, b, 15, dtype === 'uint8' ? 0 : -9, 9));
        compareBoth(`max ${dtype} ${L.name} dims ${dims}`, (b) => k.max(x(b), dims, true), { atol: 0, rtol: 0 });
        compareBoth(`min ${dtype} ${L.name} dims ${dims}`, (b) => k.min(x(b), dims, true), { atol: 0, rtol: 0 });
        if (dims) {
          compareBoth(`argmax ${dtype} ${L.name} dim ${dims}`, (b) => k.argmax(x(b), dims[0], true), {});
          compareBoth(`argmin ${dtype} ${L.name} dim ${dims}`, (b) => k.argmin(x(b), dims[0], true), {});
        }
      }
    }
  // Empty: sum over an empty dim is 0; max over one throws.
  compareBoth('sum over empty dim', (b) => k.sum(base([3, 0], 'float32', b), 1, true), sumTol('float32'));
  compareBoth('sum keeping an empty dim', (b) => k.sum(base([0, 4], 'float32', b), 1, true), sumTol('float32'));
  assert.throws(() => k.max(base([3, 0], 'float32', DEV), 1), /max/);
}

/** Shapes big enough for the split-across-threads and column-block paths. */
function largeGroup(): void {
  const big: [number[], number[] | undefined][] = [
    [[2, 70001], [1]], [[70001, 2], [0]], [[140001], undefined], [[2, 100, 400], [0, 2]], [[257, 513], [0]],
    [[16, 4099], [1]], [[1, 70003], [1]], [[2000, 70], [0]],
  ];
  for (const [shape, dims] of big) {
    compareBoth(`sum [${shape}] dims ${dims}`, (b) => k.sum(base(shape, 'float32', b, 4, -1, 3), dims, true), sumTol('float32'));
    compareBoth(`sum f64 [${shape}] dims ${dims}`, (b) => k.sum(base(shape, 'float64', b, 5), dims, true), sumTol('float64'));
    compareBoth(`max [${shape}] dims ${dims}`, (b) => k.max(base(shape, 'float32', b, 6), dims, true), { atol: 0, rtol: 0 });
    compareBoth(`min i32 [${shape}] dims ${dims}`, (b) => k.min(base(shape, 'int32', b, 7, -1e6, 1e6), dims, true), { atol: 0, rtol: 0 });
    if (shape.length === 2)
      compareBoth(`sum T [${shape}]`, (b) => k.sum(base(shape, 'float32', b, 8).t(), 0, true), sumTol('float32'));
  }
}

/** NaN propagates through max/min/sum; infinities behave as values. */
function specialGroup(): void {
  for (const n of [1, 7, 33, 257, 1500]) {
    for (const at of [0, n - 1, n >> 1]) {
      const mk = (b: Backend, v: number) => {
        const d = seeded(4 * n, 9, -5, 5);
        d[at * 4 + 1] = v;
        return k.tensor(d, { shape: [n, 4], dtype: 'float32', backend: b });
      };
      for (const v of [NaN, Infinity, -Infinity])
        for (const dims of [[0], [1], undefined]) {
          compareBoth(`max ${v} at ${at} n ${n} dims ${dims}`, (b) => k.max(mk(b, v), dims, true), { atol: 0, rtol: 0 });
          compareBoth(`min ${v} at ${at} n ${n} dims ${dims}`, (b) => k.min(mk(b, v), dims, true), { atol: 0, rtol: 0 });
          compareBoth(`sum ${v} at ${at} n ${n} dims ${dims}`, (b) => k.sum(mk(b, v), dims, true), sumTol('float32'));
          for (const d of [0, 1])
            for (const op of ['argmax', 'argmin'] as const)
              compareBoth(`${op} ${v} at ${at} n ${n} dim ${d}`, (b) => (op === 'argmax' ? k.argmax : k.argmin)(mk(b, v), d, true), {});
        }
    }
  }
  const allInf = (b: Backend) => k.full([3, 5], -Infinity, { backend: b });
  compareBoth('max of -inf', (b) => k.max(allInf(b), 1, true), { atol: 0, rtol: 0 });
}

function argGroup(): void {
  for (const L of layouts()) {
    if (L.shape.length === 0) continue;
    const nd = L.view(base(L.shape, 'float32', 'ref')).ndim;
    for (let d = 0; d < nd; d++)
      for (const dtype of ['float32', 'float64', 'int32', 'int64'] as const)
        for (const op of ['argmax', 'argmin'] as const) {
          // Integer values in a small range: ties are common, the first index must win.
          const f = (b: Backend) => (op === 'argmax' ? k.argmax : k.argmin)(L.view(base(L.shape, dtype, b, 10, -4, 4).to(dtype === 'float32' || dtype === 'float64' ? 'int32' : dtype).to(dtype)), d, true);
          compareBoth(`${op} ${dtype} ${L.name} dim ${d}`, f, {});
        }
  }
  compareBoth('argmax flat', (b) => k.argmax(base([33, 7], 'float32', b, 11)), {});
  // long contiguous rows take the vectorized extreme, then an index scan in blocks of 64: the
  // first of two equal maxima (or the first NaN) at a block's edges, with the second after it
  for (const at of [0, 63, 64, 127, 998])
    for (const v of [NaN, 100, -100])
      for (const op of ['argmax', 'argmin'] as const)
        compareBoth(`${op} of 2 x 1000 rows, ${v} at ${at} and ${at + 1} / 999`, (b) => {
          const d = seeded(2000, 14, -5, 5);
          for (const i of [at, at + 1, 1000 + at, 1999]) d[i] = v;
          return (op === 'argmax' ? k.argmax : k.argmin)(k.tensor(d, { shape: [2, 1000], dtype: 'float32', backend: b }), 1, true);
        }, {});
  compareBoth('argmax big dim 0', (b) => k.argmax(base([3000, 300], 'float32', b, 12), 0), {});
  compareBoth('argmin big dim 1', (b) => k.argmin(base([300, 3000], 'float32', b, 13), 1), {});
}

function errorGroup(): void {
  const kern = k.getBackend(DEV).kernels;
  const t = (shape: number[], dtype: k.DType = 'float32') => k.zeros(shape, { dtype, backend: DEV });
  const throwsWith = (f: () => void, re: RegExp) => assert.throws(f, (e: Error) => e instanceof Error && re.test(e.message), `expected ${re}`);
  throwsWith(() => kern.reduce('sum', t([3, 4]), t([3, 2])), /reduce: out \[3,2\] is not a keepdim reduction of x \[3,4\]/);
  throwsWith(() => kern.reduce('sum', t([3, 4]), t([3])), /reduce: out \[3\] must have the rank of x \[3,4\]/);
  throwsWith(() => kern.reduce('sum', t([3, 4], 'int32'), t([3, 1], 'int32')), /reduce: sum does not support dtype int32/);
  throwsWith(() => kern.reduce('max', t([3, 4]), t([3, 1], 'float64')), /reduce: out dtype float64/);
  throwsWith(() => kern.reduce('max', t([3, 0]), t([3, 1])), /reduce: max of an empty dim of \[3,0\]/);
  throwsWith(() => kern.reduce('sum', t([3, 4]), t([3, 2]).narrow(1, 0, 1)), /reduce: out \[3,1\] must be contiguous/);
  throwsWith(() => kern.argReduce('argmax', t([3, 4]), 1, t([3, 1])), /arg_reduce: out has dtype float32/);
  throwsWith(() => kern.argReduce('argmax', t([3, 4]), 2, t([3, 1], 'int64')), /arg_reduce: argmax dim 2 out of range/);
  throwsWith(() => kern.argReduce('argmin', t([3, 4]), 1, t([3, 4], 'int64')), /arg_reduce: argmin out \[3,4\] does not match/);
  throwsWith(() => kern.argReduce('argmax', t([3, 0]), 1, t([3, 1], 'int64')), /arg_reduce: argmax over an empty dim/);
}

const GROUPS: Record<string, () => void> = {
  reduce: reduceGroup, large: largeGroup, special: specialGroup, arg: argGroup, errors: errorGroup,
};

if (CHILD) {
  const addon = (await import('../../src/backend/addon.js')).loadNative()!;
  for (const f of Object.values(GROUPS)) k.tidy(() => f());
  console.log(`ok ${JSON.stringify(addon.info())}`);
} else {
  const skip = HAS_CPU ? false : 'cpu backend unavailable (native addon not built: run npm run build)';
  for (const device of ALL_DEVICES)
    for (const [name, f] of Object.entries(GROUPS))
      test(`${device} reduce: ${name}`, { skip: skipUnless(device) }, () => {
        DEV = device;
        k.tidy(() => f());
      });
  test('cpu reduce: large on 1 thread', { skip }, async () => {
    DEV = 'cpu'; // the tests before may have left 'cuda'
    const addon = (await import('../../src/backend/addon.js')).loadNative()!;
    addon.setThreads(1);
    try {
      k.tidy(() => largeGroup());
    } finally {
      addon.setThreads(2);
    }
  });
  for (const simd of ['avx2', 'scalar'])
    test(`cpu reduce: every group under KESTREL_SIMD=${simd} (child process)`, { skip }, () => {
      const stdout = runChild(fileURLToPath(import.meta.url), { KESTREL_SIMD: simd, KESTREL_REDUCE_CHILD: '1' });
      const info = JSON.parse(stdout.trim().split('\n').pop()!.replace(/^ok /, '')) as { avx2: boolean; avx512f: boolean };
      assert.equal(info.avx512f, false);
      if (simd === 'scalar') assert.equal(info.avx2, false);
    });
}
