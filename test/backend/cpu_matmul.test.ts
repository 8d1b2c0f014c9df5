// The native `matmul` kernel (native/gemm.cc) against a float64 triple loop: every M, N, K in
// {1, 7, 33, 257} with transposed operands, batches with broadcasting and gaps, accumulation,
// long K, the block edges of the packed path, decode-step row counts (each row of a batched product
// bitwise equal to that row alone), and bad arguments (a thrown Error, never a crash).
// The AVX2 and scalar paths run in child processes with KESTREL_SIMD set, because the addon
// reads the CPU features once per process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { loadNative, nativeLoadError, type NativeAddon } from '../../src/backend/addon.js';
import { Packer, type NativeView } from '../../src/backend/cpu/native.js';
import type { DType } from '../../src/tensor/dtype.js';
import { onCpuThreads, runChild } from '../helpers.js';

const addon = loadNative();
const CHILD = process.env.KESTREL_MATMUL_CHILD === '1';

// ---------------------------------------------------------------- helpers

/** A float32 matrix stack in native storage plus its JS copy (the reference reads the same bytes). */
interface Mat extends NativeView {
  data: Float32Array;
}

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const live: number[] = [];

function storage(n: number, fill: (i: number) => number, dtype: DType = 'float32'): { handle: number; data: Float32Array } {
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = fill(i);
  const bytes = dtype === 'float64' ? 8 : 4;
  const handle = addon!.alloc(n * bytes, false);
  live.push(handle);
  if (dtype === 'float64') addon!.write(handle, 0, Float64Array.from(data));
  else addon!.write(handle, 0, data);
  return { handle, data };
}

function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** Elements a view can address: offset + sum((n-1)*stride) + 1 (0 when empty). */
function extent(shape: readonly number[], strides: readonly number[], offset = 0): number {
  if (shape.some((n) => n === 0)) return offset;
  return offset + shape.reduce((acc, n, i) => acc + (n - 1) * strides[i], 0) + 1;
}

/** A random view with the given shape and strides over fresh storage. */
function randView(shape: number[], strides: number[], seed: number, offset = 0, dtype: DType = 'float32'): Mat {
  const r = rng(seed);
  const { handle, data } = storage(Math.max(extent(shape, strides, offset), 1), () => 2 * r() - 1, dtype);
  return { handle, data, dtype, offset, shape, strides };
}

/** A logically [..., R, C] operand stored transposed ([..., C, R] contiguous, last two dims swapped). */
function transposedStrides(shape: number[]): number[] {
  const nd = shape.length;
  const stored = [...shape.slice(0, nd - 2), shape[nd - 1], shape[nd - 2]];
  const s = contiguousStrides(stored);
  return [...s.slice(0, nd - 2), s[nd - 1], s[nd - 2]];
}

const packer = (): Packer => new Packer(addon!);

function matmul(a: NativeView, b: NativeView, out: NativeView, accumulate = false): void {
  packer().view(a).view(b).view(out).num(accumulate ? 1 : 0).call('matmul');
}

function readOut(out: Mat): Float32Array {
  const r = new Float32Array(out.data.length);
  addon!.read(out.handle, 0, r);
  return r;
}

/** Offset of batch element t (row-major over batchShape) in a view. */
function batchOffset(m: Mat, batchShape: readonly number[], t: number): number {
  let o = m.offset;
  for (let d = batchShape.length - 1; d >= 0; d--) {
    o += (t % batchShape[d]) * m.strides[d];
    t = Math.floor(t / batchShape[d]);
  }
  return o;
}

const U = 2 ** -24; // float32 unit roundoff

/**
 * Float64 reference and a per-element tolerance. The inputs are exact float32 values, so the
 * float64 sum is exact to ~1e-16; the kernel's float32 sum of K products (FMA, blocked) has
 * a rounding error bounded probabilistically by ~sqrt(K)·u·Σ|a_k b_k| (Higham & Mary 2019) and
 * in the worst case by K·u·Σ|a_k b_k|. We allow 4·(sqrt(K)+1)·u·(Σ|a_k b_k| + |c_old|): tight
 * enough that any indexing or packing bug (errors of order |a||b|) fails, loose enough for any
 * legal summation order.
 */
function check(a: Mat, b: Mat, out: Mat, before: Float32Array, accumulate: boolean, label: string): void {
  const got = readOut(out);
  const nd = a.shape.length;
  const M = a.shape[nd - 2], K = a.shape[nd - 1], N = b.shape[nd - 1];
  const batchShape = out.shape.slice(0, nd - 2);
  const batch = batchShape.reduce((x, y) => x * y, 1);
  let bad = 0, worst = 0, worstAt = '';
  const msgs: string[] = [];
  const [ars, aks] = a.strides.slice(nd - 2), [bks, bcs] = b.strides.slice(nd - 2);
  const ad = a.data, bd = b.data;
  for (let t = 0; t < batch; t++) {
    const a0 = batchOffset(a, batchShape, t), b0 = batchOffset(b, batchShape, t);
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0, mag = 0;
        for (let k = 0, pa = a0 + i * ars, pb = b0 + j * bcs; k < K; k++, pa += aks, pb += bks) {
          const p = ad[pa] * bd[pb];
          s += p;
          mag += Math.abs(p);
        }
        const o = (t * M + i) * N + j;
        const old = accumulate ? before[o] : 0;
        const ref = s + old;
        const tol = 4 * (Math.sqrt(K) + 1) * U * (mag + Math.abs(old)) + 1e-30;
        const err = Math.abs(got[o] - ref);
        if (!(err <= tol)) {
          bad++;
          const where = `batch ${t} [${i}, ${j}]`;
          if (msgs.length < 5) msgs.push(`${where} got ${got[o]} want ${ref} (tol ${tol.toExponential(2)})`);
          if (!(err <= worst)) { worst = err; worstAt = where; }
        }
      }
    }
  }
  if (bad) assert.fail(`${label}: ${bad} mismatches, max error ${worst} at ${worstAt}\n  ${msgs.join('\n  ')}`);
}

interface Case {
  label: string;
  a: Mat;
  b: Mat;
  out: Mat;
  accumulate: boolean;
}

/** out is contiguous [...batch, M, N], filled with NaN (must not be read) or random values (accumulate). */
function makeOut(batch: number[], M: number, N: number, accumulate: boolean, seed: number): Mat {
  const shape = [...batch, M, N];
  const r = rng(seed);
  const n = shape.reduce((x, y) => x * y, 1);
  const { handle, data } = storage(Math.max(n, 1), () => (accumulate ? 2 * r() - 1 : NaN));
  return { handle, data, dtype: 'float32', offset: 0, shape, strides: contiguousStrides(shape) };
}

function run(c: Case): void {
  const before = Float32Array.from(c.out.data);
  matmul(c.a, c.b, c.out, c.accumulate);
  check(c.a, c.b, c.out, before, c.accumulate, c.label);
}

function simple(M: number, N: number, K: number, ta: boolean, tb: boolean, opts: { accumulate?: boolean; seed?: number } = {}): Case {
  const seed = opts.seed ?? M * 1000003 + N * 1009 + K * 7 + (ta ? 1 : 0) + (tb ? 2 : 0);
  const sa = [M, K], sb = [K, N];
  const a = randView(sa, ta ? transposedStrides(sa) : contiguousStrides(sa), seed);
  const b = randView(sb, tb ? transposedStrides(sb) : contiguousStrides(sb), seed + 1);
  const accumulate = opts.accumulate ?? false;
  return { label: `M=${M} N=${N} K=${K}${ta ? ' aT' : ''}${tb ? ' bT' : ''}${accumulate ? ' acc' : ''}`, a, b, out: makeOut([], M, N, accumulate, seed + 2), accumulate };
}

function freeAll(): void {
  while (live.length) addon!.free(live.pop()!);
}

// ---------------------------------------------------------------- case groups

const SIZES = [1, 7, 33, 257];

function gridCases(): void {
  for (const M of SIZES) for (const N of SIZES) for (const K of SIZES)
    for (const ta of [false, true]) for (const tb of [false, true]) run(simple(M, N, K, ta, tb));
  freeAll();
}

/** Sizes that cross the cache blocks (kc 384, nc 1024, mc 2048) and the small-M paths' edges (4 rows a pass; 5-8 in one). */
function edgeCases(): void {
  for (const [M, N, K] of [[70, 1100, 1000], [2100, 20, 20], [130, 65, 400], [15, 33, 385]])
    for (const tb of [false, true]) run(simple(M, N, K, false, tb));
  run(simple(29, 1030, 390, true, false));
  for (const M of [2, 3, 4, 5, 6, 7, 8]) for (const N of [15, 16, 17, 100, 1100]) for (const K of [1, 17, 600])
    for (const tb of [false, true]) run(simple(M, N, K, false, tb));
  run(simple(1, 1536, 576, true, true));
  // a batched decode step against a GQA k/v weight: 192 columns split in 16-column units over the threads
  run(simple(8, 192, 576, false, true));
  freeAll();
}

function accumulateCases(): void {
  for (const [M, N, K] of [[7, 33, 257], [33, 1, 7], [257, 33, 33], [1, 257, 33], [3, 100, 600]])
    for (const tb of [false, true]) run(simple(M, N, K, !tb, tb, { accumulate: true }));
  freeAll();
}

function batchedCases(): void {
  const B0 = 2, B1 = 3, M = 33, K = 7, N = 17;
  const full = (s: number[]) => contiguousStrides(s);
  // b broadcast over both batch dims (stride 0): the Linear case, folded into one GEMM.
  {
    const a = randView([B0, B1, M, K], full([B0, B1, M, K]), 11);
    const b = randView([B0, B1, K, N], [0, 0, N, 1], 12);
    run({ label: 'b broadcast (fold)', a, b, out: makeOut([B0, B1], M, N, false, 13), accumulate: false });
    const bt = randView([B0, B1, K, N], [0, 0, 1, K], 14);
    run({ label: 'b broadcast transposed (fold)', a, b: bt, out: makeOut([B0, B1], M, N, true, 15), accumulate: true });
  }
  // a broadcast over dim 0, b broadcast over dim 1, both transposed: the per-batch loop.
  {
    const a = randView([B0, B1, M, K], [0, M * K, 1, M], 21);
    const b = randView([B0, B1, K, N], [K * N, 0, 1, K], 22);
    run({ label: 'mixed broadcast, transposed', a, b, out: makeOut([B0, B1], M, N, false, 23), accumulate: false });
  }
  // Non-contiguous batch strides (gaps between matrices) and a storage offset.
  {
    const a = randView([B0, B1, M, K], [B1 * (M * K + 5) + 3, M * K + 5, K, 1], 31, 9);
    const b = randView([B0, B1, K, N], [B1 * K * N * 2, K * N * 2, N, 1], 32, 4);
    run({ label: 'gapped batch strides', a, b, out: makeOut([B0, B1], M, N, false, 33), accumulate: false });
  }
  // Rows with a gap (lda > K) and a broadcast b: folding must not apply across the gap.
  {
    const a = randView([4, M, K], [M * (K + 2) + 1, K + 2, 1], 41);
    const b = randView([4, K, N], [0, N, 1], 42);
    run({ label: 'lda > K, gapped batch, broadcast b', a, b, out: makeOut([4], M, N, false, 43), accumulate: false });
  }
  // Many small products (attention-shaped), which run one product per thread.
  {
    const a = randView([16, 9, 8], full([16, 9, 8]), 51);
    const b = randView([16, 8, 9], transposedStrides([16, 8, 9]), 52);
    run({ label: 'many small', a, b, out: makeOut([16], 9, 9, false, 53), accumulate: false });
  }
  freeAll();
}

function emptyCases(): void {
  const z = (shape: number[]) => randView(shape, contiguousStrides(shape), 61);
  const none = () => matmul(z([0, 5]), z([5, 3]), makeOut([], 0, 3, false, 1));
  none();
  matmul(z([4, 5]), z([5, 0]), makeOut([], 4, 0, false, 1));
  matmul(z([0, 4, 5]), z([0, 5, 3]), makeOut([0], 4, 3, false, 1));
  // K = 0: out = 0, or unchanged when accumulating.
  const out = makeOut([], 3, 4, false, 1);
  matmul(z([3, 0]), z([0, 4]), out);
  assert.deepEqual([...readOut(out)], new Array(12).fill(0));
  const acc = makeOut([], 3, 4, true, 2);
  matmul(z([3, 0]), z([0, 4]), acc, true);
  assert.deepEqual([...readOut(acc)], [...acc.data]);
  freeAll();
}

function errorCases(): void {
  const mk = (shape: number[], strides = contiguousStrides(shape), dtype: DType = 'float32', offset = 0) =>
    randView(shape, strides, 71, offset, dtype);
  const a = mk([4, 5]), b = mk([5, 3]), out = makeOut([], 4, 3, false, 1);
  const throwsWith = (f: () => void, re: RegExp) => assert.throws(f, (e: Error) => e instanceof Error && re.test(e.message));
  throwsWith(() => matmul(mk([4, 5], undefined, 'float64'), b, out), /matmul: dtype a=float64/);
  throwsWith(() => matmul(a, mk([6, 3]), out), /inner sizes differ.*\[4,5\].*\[6,3\]/);
  throwsWith(() => matmul(a, b, makeOut([], 4, 4, false, 1)), /out shape/);
  throwsWith(() => matmul(mk([4, 5], [10, 2]), b, out), /strides \(10, 2\)/);
  throwsWith(() => matmul(mk([2, 4, 5]), mk([3, 5, 3]), makeOut([2], 4, 3, false, 1)), /batch dims differ/);
  throwsWith(() => matmul(a, mk([1, 5, 3]), out), /equal ranks/);
  const wide = makeOut([], 4, 6, false, 1);
  throwsWith(() => matmul(a, b, { ...wide, shape: [4, 3], strides: [6, 1] }), /out must be contiguous/);
  // out sharing memory with an input would be read while it is written.
  throwsWith(() => matmul(a, mk([5, 5]), { ...a, strides: [5, 1] }), /overlaps an input/);
  // A view that claims more than its storage holds is rejected when the arguments are read.
  throwsWith(() => matmul({ ...a, shape: [40, 5] }, b, makeOut([], 40, 3, false, 1)), /reaches past its storage/);
  throwsWith(() => matmul({ ...a, offset: 1 }, b, out), /reaches past its storage/);
  freeAll();
}

/**
 * Batched decode steps (M = 2..33 rows against a Linear weight stored [N, K]): the float64 check on
 * odd shapes, and batch invariance: each row of the batched product equals, bit for bit, the
 * product of that row alone (a continuous batch then never changes a sequence's greedy token).
 * Every path sums a C element over k in an order that does not depend on the other rows.
 */
function decodeRowsCases(): void {
  for (const M of [8, 9, 17, 31, 32, 33]) for (const N of [7, 33, 257]) for (const K of [1, 7, 33, 257])
    run(simple(M, N, K, false, true));
  for (const [M, N, K] of [[2, 33, 257], [7, 257, 33], [8, 100, 600], [9, 65, 576], [17, 257, 7], [32, 1100, 33]]) {
    const c = simple(M, N, K, false, true);
    matmul(c.a, c.b, c.out);
    const batched = readOut(c.out);
    for (let i = 0; i < M; i++) {
      const alone = makeOut([], 1, N, false, i);
      matmul({ ...c.a, shape: [1, K], offset: i * K }, c.b, alone);
      const got = readOut(alone);
      const at = got.findIndex((x, j) => !Object.is(x, batched[i * N + j]));
      if (at >= 0) assert.fail(`${c.label}: row ${i} alone gives ${got[at]} at column ${at}, in the batch ${batched[i * N + at]}`);
    }
  }
  freeAll();
}

const GROUPS: Record<string, () => void> = {
  grid: gridCases, edges: edgeCases, accumulate: accumulateCases, batched: batchedCases, empty: emptyCases, errors: errorCases,
  decodeRows: decodeRowsCases,
};

// ---------------------------------------------------------------- entry points

if (CHILD) {
  // Child mode (see the SIMD tests below): run every group under the env's KESTREL_SIMD.
  onCpuThreads(() => {
    for (const f of Object.values(GROUPS)) f();
  });
} else {
  const skip = addon ? false : `native addon not built: ${nativeLoadError()}`;
  for (const [name, f] of Object.entries(GROUPS)) {
    test(`matmul ${name} (2 threads, best SIMD)`, { skip }, () => {
      addon!.setThreads(2);
      f();
      assert.equal(addon!.liveBytes(), 0);
    });
  }
  test('matmul edges and batches (1 thread)', { skip }, () => {
    addon!.setThreads(1);
    edgeCases();
    batchedCases();
    accumulateCases();
    addon!.setThreads(2);
  });
  test('small-M products (a batched decode step) are batch- and thread-invariant bit for bit', { skip }, () => {
    // each output is one dot-product sum whatever the rows beside it and however the columns are split
    const [M, N, K] = [8, 192, 576];
    const a = randView([M, K], contiguousStrides([M, K]), 5);
    const b = randView([K, N], transposedStrides([K, N]), 6);
    const product = (rows: Mat, threads: number): Float32Array => {
      addon!.setThreads(threads);
      const out = makeOut([], rows.shape[0], N, false, 7);
      matmul(rows, b, out, false);
      return Float32Array.from(out.data);
    };
    const two = product(a, 2);
    assert.deepEqual(product(a, 1), two, '1 thread vs 2');
    for (let r = 0; r < M; r++) {
      const row = { ...a, offset: r * K, shape: [1, K] };
      assert.deepEqual(product(row, 2), two.subarray(r * N, (r + 1) * N), `row ${r} alone vs in the batch of ${M}`);
    }
    addon!.setThreads(2);
    freeAll();
  });
  for (const simd of ['avx2', 'scalar']) {
    test(`matmul all groups under KESTREL_SIMD=${simd} (child process)`, { skip }, () => {
      const stdout = runChild(fileURLToPath(import.meta.url), { KESTREL_SIMD: simd, KESTREL_MATMUL_CHILD: '1' }, 60_000);
      const info = JSON.parse(stdout.trim().split('\n').pop()!.replace(/^ok /, '')) as ReturnType<NativeAddon['info']>;
      assert.equal(info.avx512f, false);
      if (simd === 'scalar') assert.equal(info.avx2, false);
    });
  }
}
