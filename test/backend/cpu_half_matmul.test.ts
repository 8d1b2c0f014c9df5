// The native `matmul` kernel with bfloat16 / float16 operands (native/gemm_half.h) against a
// float64 sum over the same half values: M, N, K in {1, 7, 33, 257} with transposed operands,
// K that is no multiple of 2, 16 or 32, sizes that cross the paths' cache blocks, strided and
// broadcast batches, accumulation, float32 and half outputs, and bad arguments. Every path runs
// in its own child process (KESTREL_BF16_GEMM=amx|avx512bf16|convert, KESTREL_SIMD=avx2|scalar)
// with 1 and 2 threads; a path this CPU lacks is skipped naming the missing feature. A float32 b
// (rounded to a's dtype while packed) equals the product with b rounded first, bit for bit.
//
// Tolerance: products of two half values are exact in float32, so the only error is the float32
// sum's: 4·(sqrt(K)+1)·2^-24·(Σ|a_k b_k| + |c_old|), as test/backend/cpu_matmul.test.ts argues. A
// half out must equal the float32 out of the same call rounded to nearest even, bit for bit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { loadNative, nativeLoadError, type NativeAddon } from '../../src/backend/addon.js';
import { Packer, type NativeView } from '../../src/backend/cpu/native.js';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../../src/tensor/half.js';
import type { DType } from '../../src/tensor/dtype.js';
import { onCpuThreads, runChild, withEnv } from '../helpers.js';

const addon = loadNative();
const CHILD = process.env.KESTREL_HALF_MATMUL_CHILD === '1';
type Half = 'bfloat16' | 'float16';
const HALVES: readonly Half[] = ['bfloat16', 'float16'];

// ---------------------------------------------------------------- operands

/** A half matrix stack in native storage and its values decoded to float64 (the reference reads those). */
interface Mat extends NativeView {
  values: Float64Array;
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

const toHalf = (d: Half, x: number): number => (d === 'bfloat16' ? f32ToBf16(x) : f32ToF16(x));
const fromHalf = (d: Half, h: number): number => (d === 'bfloat16' ? bf16ToF32(h) : f16ToF32(h));

const live: number[] = [];
function freeAll(): void {
  while (live.length) addon!.free(live.pop()!);
}

/** n elements of dtype in fresh storage from fill(i) (rounded to the dtype); returns the stored values. */
function storage(n: number, dtype: DType, fill: (i: number) => number): { handle: number; values: Float64Array } {
  const values = new Float64Array(n);
  let bytes: Float64Array | Float32Array | Uint16Array;
  if (dtype === 'float32' || dtype === 'float64') {
    const vals = Array.from({ length: n }, (_, i) => fill(i));
    bytes = dtype === 'float32' ? Float32Array.from(vals) : Float64Array.from(vals);
    values.set(bytes);
  } else {
    const d = dtype as Half;
    bytes = Uint16Array.from({ length: n }, (_, i) => toHalf(d, fill(i)));
    bytes.forEach((h, i) => (values[i] = fromHalf(d, h)));
  }
  const handle = addon!.alloc(Math.max(bytes.byteLength, 2), false);
  live.push(handle);
  addon!.write(handle, 0, bytes);
  return { handle, values };
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

function extent(shape: readonly number[], strides: readonly number[], offset = 0): number {
  if (shape.some((n) => n === 0)) return offset;
  return offset + shape.reduce((acc, n, i) => acc + (n - 1) * strides[i], 0) + 1;
}

function randView(dtype: DType, shape: number[], strides: number[], seed: number, offset = 0): Mat {
  const r = rng(seed);
  const { handle, values } = storage(Math.max(extent(shape, strides, offset), 1), dtype, () => 2 * r() - 1);
  return { handle, values, dtype, offset, shape, strides };
}

/** A logically [..., R, C] operand stored transposed. */
function transposedStrides(shape: number[]): number[] {
  const nd = shape.length;
  const s = contiguousStrides([...shape.slice(0, nd - 2), shape[nd - 1], shape[nd - 2]]);
  return [...s.slice(0, nd - 2), s[nd - 1], s[nd - 2]];
}

/** out [...batch, M, N] contiguous: NaN (must not be read) or random values (accumulate). */
function makeOut(dtype: DType, batch: number[], M: number, N: number, accumulate: boolean, seed: number): Mat {
  const shape = [...batch, M, N];
  const r = rng(seed);
  const n = shape.reduce((x, y) => x * y, 1);
  const { handle, values } = storage(Math.max(n, 1), dtype, () => (accumulate ? 2 * r() - 1 : NaN));
  return { handle, values, dtype, offset: 0, shape, strides: contiguousStrides(shape) };
}

function matmul(a: NativeView, b: NativeView, out: NativeView, accumulate = false): void {
  new Packer(addon!).view(a).view(b).view(out).num(accumulate ? 1 : 0).call('matmul');
}

function readRaw(out: Mat): Float32Array | Uint16Array {
  const n = out.values.length;
  const r = out.dtype === 'float32' ? new Float32Array(n) : new Uint16Array(n);
  addon!.read(out.handle, 0, r);
  return r;
}

// ---------------------------------------------------------------- checking

function batchOffset(m: Mat, batchShape: readonly number[], t: number): number {
  let o = m.offset;
  for (let d = batchShape.length - 1; d >= 0; d--) {
    o += (t % batchShape[d]) * m.strides[d];
    t = Math.floor(t / batchShape[d]);
  }
  return o;
}

const U = 2 ** -24;

/** The float32 result against the float64 sum of the half products (see the file comment). */
function checkFloat(a: Mat, b: Mat, got: Float32Array, before: Float64Array, accumulate: boolean, label: string): void {
  const nd = a.shape.length;
  const M = a.shape[nd - 2], K = a.shape[nd - 1], N = b.shape[nd - 1];
  const batchShape = a.shape.slice(0, nd - 2);
  const batch = batchShape.reduce((x, y) => x * y, 1);
  const [ars, aks] = a.strides.slice(nd - 2), [bks, bcs] = b.strides.slice(nd - 2);
  const ad = a.values, bd = b.values;
  const msgs: string[] = [];
  let bad = 0, worst = 0, worstAt = '';
  for (let t = 0; t < batch; t++) {
    const a0 = batchOffset(a, batchShape, t), b0 = batchOffset(b, batchShape, t);
    for (let i = 0; i < M; i++)
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
  if (bad) assert.fail(`${label}: ${bad} mismatches, max error ${worst} at ${worstAt}\n  ${msgs.join('\n  ')}`);
}

interface Case {
  label: string;
  a: Mat;
  b: Mat;
  batch: number[];
  accumulate: boolean;
  seed: number;
}

/**
 * Runs c into a float32 out (checked against float64) and into an out of the operands' dtype,
 * which must hold the float32 result rounded to nearest even (same path and threads: same sums).
 */
function run(c: Case, halfOut = true): void {
  const nd = c.a.shape.length;
  const M = c.a.shape[nd - 2], N = c.b.shape[nd - 1];
  const dtype = c.a.dtype as Half;
  const f = makeOut('float32', c.batch, M, N, c.accumulate, c.seed);
  matmul(c.a, c.b, f, c.accumulate);
  const got = readRaw(f) as Float32Array;
  checkFloat(c.a, c.b, got, f.values, c.accumulate, `${dtype} ${c.label} -> float32`);
  if (!halfOut) return;
  const h = makeOut(dtype, c.batch, M, N, c.accumulate, c.seed);
  if (c.accumulate) {
    // the float32 run must start from the same (half-rounded) values the half out holds
    const f2 = makeOut('float32', c.batch, M, N, false, 0);
    addon!.write(f2.handle, 0, Float32Array.from(h.values.subarray(0, Math.max(f2.values.length, 1))));
    matmul(c.a, c.b, f2, true);
    got.set(readRaw(f2) as Float32Array);
  }
  matmul(c.a, c.b, h, c.accumulate);
  const bits = readRaw(h) as Uint16Array;
  const n = c.batch.reduce((x, y) => x * y, 1) * M * N;
  for (let i = 0; i < n; i++)
    if (bits[i] !== toHalf(dtype, got[i]))
      assert.fail(`${dtype} ${c.label} -> ${dtype}: element ${i} is 0x${bits[i].toString(16)}, the float32 result ${got[i]} rounds to 0x${toHalf(dtype, got[i]).toString(16)}`);
}

function simple(dtype: Half, M: number, N: number, K: number, ta: boolean, tb: boolean, accumulate = false): Case {
  const seed = M * 1000003 + N * 1009 + K * 7 + (ta ? 1 : 0) + (tb ? 2 : 0) + (dtype === 'float16' ? 5 : 0);
  const sa = [M, K], sb = [K, N];
  const a = randView(dtype, sa, ta ? transposedStrides(sa) : contiguousStrides(sa), seed);
  const b = randView(dtype, sb, tb ? transposedStrides(sb) : contiguousStrides(sb), seed + 1);
  return { label: `M=${M} N=${N} K=${K}${ta ? ' aT' : ''}${tb ? ' bT' : ''}${accumulate ? ' acc' : ''}`, a, b, batch: [], accumulate, seed: seed + 2 };
}

// ---------------------------------------------------------------- case groups

const SIZES = [1, 7, 33, 257];

function gridCases(dtype: Half): void {
  for (const M of SIZES) for (const N of SIZES) for (const K of SIZES)
    for (const ta of [false, true]) for (const tb of [false, true]) run(simple(dtype, M, N, K, ta, tb), !ta);
  freeAll();
}

/** K off the pair/tile units (2, 16, 32) and sizes across the blocks (AMX: kc 512, nc 512; bf16: kc 512, nc 1024). */
function edgeCases(dtype: Half): void {
  for (const K of [2, 3, 15, 16, 17, 31, 32, 63, 65]) for (const tb of [false, true]) run(simple(dtype, 40, 37, K, !tb, tb));
  for (const [M, N, K] of [[70, 1100, 1000], [33, 40, 1030], [130, 65, 513]])
    for (const tb of [false, true]) run(simple(dtype, M, N, K, false, tb));
  run(simple(dtype, 29, 530, 390, true, false));
  for (const M of [2, 3, 14, 15, 16, 31, 32, 33]) run(simple(dtype, M, 100, 600, false, true));
  freeAll();
}

function accumulateCases(dtype: Half): void {
  for (const [M, N, K] of [[7, 33, 257], [33, 1, 7], [257, 33, 33], [1, 257, 33], [40, 100, 600]])
    for (const tb of [false, true]) run(simple(dtype, M, N, K, !tb, tb, true));
  freeAll();
}

function batchedCases(dtype: Half): void {
  const B0 = 2, B1 = 3, M = 33, K = 7, N = 17;
  const full = (s: number[]) => contiguousStrides(s);
  const mk = (shape: number[], strides: number[], seed: number, offset = 0) => randView(dtype, shape, strides, seed, offset);
  run({ label: 'b broadcast (fold)', a: mk([B0, B1, M, K], full([B0, B1, M, K]), 11), b: mk([B0, B1, K, N], [0, 0, N, 1], 12), batch: [B0, B1], accumulate: false, seed: 13 });
  run({ label: 'b broadcast transposed (fold), accumulate', a: mk([B0, B1, M, 40], full([B0, B1, M, 40]), 14), b: mk([B0, B1, 40, N], [0, 0, 1, 40], 15), batch: [B0, B1], accumulate: true, seed: 16 });
  run({ label: 'mixed broadcast, transposed', a: mk([B0, B1, M, K], [0, M * K, 1, M], 21), b: mk([B0, B1, K, N], [K * N, 0, 1, K], 22), batch: [B0, B1], accumulate: false, seed: 23 });
  run({ label: 'gapped batch strides', a: mk([B0, B1, M, K], [B1 * (M * K + 5) + 3, M * K + 5, K, 1], 31, 9), b: mk([B0, B1, K, N], [B1 * K * N * 2, K * N * 2, N, 1], 32, 4), batch: [B0, B1], accumulate: false, seed: 33 });
  run({ label: 'lda > K, gapped batch, broadcast b', a: mk([4, M, K], [M * (K + 2) + 1, K + 2, 1], 41), b: mk([4, K, N], [0, N, 1], 42), batch: [4], accumulate: false, seed: 43 });
  run({ label: 'many small', a: mk([16, 9, 8], full([16, 9, 8]), 51), b: mk([16, 8, 9], transposedStrides([16, 8, 9]), 52), batch: [16], accumulate: false, seed: 53 });
  run({ label: 'many medium (attention-shaped)', a: mk([6, 64, 40], full([6, 64, 40]), 54), b: mk([6, 40, 64], transposedStrides([6, 40, 64]), 55), batch: [6], accumulate: false, seed: 56 });
  freeAll();
}

function emptyCases(dtype: Half): void {
  const z = (shape: number[]) => randView(dtype, shape, contiguousStrides(shape), 61);
  matmul(z([0, 5]), z([5, 3]), makeOut(dtype, [], 0, 3, false, 1));
  matmul(z([4, 5]), z([5, 0]), makeOut('float32', [], 4, 0, false, 1));
  for (const outType of ['float32', dtype] as const) {
    const out = makeOut(outType, [], 3, 4, false, 1);
    matmul(z([3, 0]), z([0, 4]), out);
    assert.deepEqual([...readRaw(out)], new Array(12).fill(0), `K = 0 into ${outType} writes zeros`);
    const acc = makeOut(outType, [], 3, 4, true, 2);
    const before = [...readRaw(acc)];
    matmul(z([3, 0]), z([0, 4]), acc, true);
    assert.deepEqual([...readRaw(acc)], before, `K = 0 accumulating into ${outType} leaves out as it was`);
  }
  freeAll();
}

function errorCases(dtype: Half): void {
  const other: Half = dtype === 'bfloat16' ? 'float16' : 'bfloat16';
  const mk = (shape: number[], d: DType = dtype, strides = contiguousStrides(shape), offset = 0) => randView(d, shape, strides, 71, offset);
  const a = mk([4, 5]), b = mk([5, 3]), out = makeOut('float32', [], 4, 3, false, 1);
  const throwsWith = (f: () => void, re: RegExp) => assert.throws(f, (e: Error) => e instanceof Error && re.test(e.message));
  throwsWith(() => matmul(a, mk([5, 3], other), out), new RegExp(`matmul: dtype a=${dtype} b=${other}`));
  throwsWith(() => matmul(a, b, makeOut(other, [], 4, 3, false, 1)), new RegExp(`out=${other}`));
  throwsWith(() => matmul(a, b, makeOut('float64', [], 4, 3, false, 1)), /out=float64/);
  throwsWith(() => matmul(mk([4, 5], 'float32'), b, out), /dtype a=float32 b=/);
  throwsWith(() => matmul(a, mk([6, 3]), out), /inner sizes differ/);
  throwsWith(() => matmul(mk([4, 5], dtype, [10, 2]), b, out), /strides \(10, 2\)/);
  // a 2-byte view counted in its own elements: one past the end is caught when the arguments are read
  throwsWith(() => matmul({ ...a, shape: [40, 5] }, b, makeOut('float32', [], 40, 3, false, 1)), /reaches past its storage/);
  throwsWith(() => matmul(a, { ...b, offset: 1 }, out), /reaches past its storage/);
  // out overlapping an input, even through another dtype's element size
  throwsWith(() => matmul(a, mk([5, 2]), { ...a, dtype: 'float32', shape: [4, 2], strides: [2, 1] }), /overlaps an input/);
  if (dtype === 'bfloat16') // (float16 always converts and never reads it)
    throwsWith(() => withEnv('KESTREL_BF16_GEMM', 'fast', () => matmul(a, b, out)), /KESTREL_BF16_GEMM=fast: expected amx, avx512bf16, convert/);
  freeAll();
}

/**
 * A float32 b with a half a (hgemm_on_float_b: b rounded to a's dtype while packed) equals, bit for
 * bit, the same call with b rounded to a's dtype first (nearest even, as the cast kernels): float32
 * and half outs, accumulation, transposed operands, odd sizes and sizes across the cache blocks.
 */
function floatBCases(dtype: Half): void {
  const shapes: [number, number, number][] = [[1, 7, 33], [7, 33, 257], [33, 257, 1], [257, 1, 7], [33, 33, 33], [40, 37, 17], [70, 530, 600]];
  shapes.forEach(([M, N, K], n) => {
    for (const ta of [false, true]) for (const tb of [false, true]) for (const accumulate of [false, true]) {
      const seed = 7919 * n + (ta ? 1 : 0) + (tb ? 2 : 0);
      const sa = [M, K], sb = [K, N];
      const a = randView(dtype, sa, ta ? transposedStrides(sa) : contiguousStrides(sa), seed);
      const bStrides = tb ? transposedStrides(sb) : contiguousStrides(sb);
      // values up to 2^4 with all 24 bits set, so that rounding to half matters in every element
      const bf = randView('float32', sb, bStrides, seed + 1);
      const { handle, values } = storage(bf.values.length, 'float32', (i) => bf.values[i] * 16);
      const bF: Mat = { ...bf, handle, values };
      const bH: Mat = { ...bf, ...storage(values.length, dtype, (i) => values[i]), dtype };
      for (const outType of ['float32', dtype] as const) {
        const label = `${dtype} float32 b M=${M} N=${N} K=${K}${ta ? ' aT' : ''}${tb ? ' bT' : ''}${accumulate ? ' acc' : ''} -> ${outType}`;
        const [o1, o2] = [makeOut(outType, [], M, N, accumulate, seed + 2), makeOut(outType, [], M, N, accumulate, seed + 2)];
        matmul(a, bF, o1, accumulate);
        matmul(a, bH, o2, accumulate);
        const [x, y] = [readRaw(o1), readRaw(o2)];
        const at = x.findIndex((v, i) => !Object.is(v, y[i]));
        assert.equal(at, -1, `${label}: element ${at} is ${x[at]}, the cast-first product's ${y[at]}`);
      }
    }
    freeAll();
  });
}

const GROUPS: Record<string, (d: Half) => void> = {
  grid: gridCases, edges: edgeCases, accumulate: accumulateCases, batched: batchedCases, empty: emptyCases, errors: errorCases,
  floatB: floatBCases,
};

function allGroups(dtypes: readonly Half[]): void {
  for (const d of dtypes) for (const f of Object.values(GROUPS)) f(d);
}

// ---------------------------------------------------------------- entry points

type Info = ReturnType<NativeAddon['info']>;
const lastInfo = (stdout: string): Info => JSON.parse(stdout.trim().split('\n').pop()!.replace(/^ok /, '')) as Info;

if (process.env.KESTREL_HALF_MATMUL_PROBE === '1') {
  // prints what one small bf16 product says under the env (see the last test below)
  const a = randView('bfloat16', [2, 2], [2, 1], 1);
  try {
    matmul(a, a, makeOut('float32', [], 2, 2, false, 1));
    console.log('no error');
  } catch (e) {
    console.log((e as Error).message);
  }
  freeAll();
} else if (CHILD) {
  // Child mode: every group under the env's KESTREL_BF16_GEMM / KESTREL_SIMD, on 1 and 2 threads.
  const dtypes = (process.env.KESTREL_HALF_MATMUL_DTYPES ?? 'bfloat16,float16').split(',') as Half[];
  onCpuThreads(() => allGroups(dtypes));
} else {
  const skip = addon ? false : `native addon not built: ${nativeLoadError()}`;
  const info = addon?.info();
  for (const dtype of HALVES)
    for (const [name, f] of Object.entries(GROUPS))
      test(`${dtype} matmul ${name} (2 threads, automatic path)`, { skip }, () => {
        addon!.setThreads(2);
        f(dtype);
        assert.equal(addon!.liveBytes(), 0);
      });

  test('addon.info() names the bf16 path the CPU features allow', { skip }, () => {
    // AMX when Linux grants the tiles; else vdpbf16ps on AMD, converting on Intel (gemm_half.cc's choose_path)
    const best = info!.amxBf16 ? ['amx', 'avx512bf16', 'convert'] : info!.avx512bf16 ? ['avx512bf16', 'convert'] : ['convert'];
    assert.ok(best.includes(info!.bf16Gemm), `bf16Gemm ${info!.bf16Gemm} with ${JSON.stringify(info)}`);
    assert.equal(info!.fp16Gemm, 'convert');
  });

  // Each bf16 path forced (float16 always converts: it runs in the SIMD children below).
  const paths = [
    { path: 'amx', needs: 'amx_bf16 (AMX tiles with BF16)', has: (i: Info) => i.amxBf16 },
    { path: 'avx512bf16', needs: 'avx512_bf16 (vdpbf16ps)', has: (i: Info) => i.avx512bf16 },
    { path: 'convert', needs: '', has: () => true },
  ];
  for (const p of paths) {
    const lacks = skip || (info && !p.has(info) ? `this CPU lacks ${p.needs}` : false);
    test(`bfloat16 matmul, every group, KESTREL_BF16_GEMM=${p.path} (child process, 1 and 2 threads)`, { skip: lacks }, () => {
      const out = runChild(fileURLToPath(import.meta.url), {
        KESTREL_BF16_GEMM: p.path, KESTREL_HALF_MATMUL_CHILD: '1', KESTREL_HALF_MATMUL_DTYPES: 'bfloat16',
      }, 300_000);
      assert.equal(lastInfo(out).bf16Gemm, p.path);
    });
  }
  // The convert path on lower SIMD levels: sgemm's AVX2 or scalar micro-kernel, AVX2/F16C or scalar widening.
  for (const simd of ['avx2', 'scalar']) {
    test(`bfloat16 and float16 matmul under KESTREL_SIMD=${simd} (child process)`, { skip }, () => {
      const out = runChild(fileURLToPath(import.meta.url), { KESTREL_SIMD: simd, KESTREL_HALF_MATMUL_CHILD: '1' }, 300_000);
      const i = lastInfo(out);
      assert.equal(i.avx512f, false);
      assert.equal(i.bf16Gemm, 'convert');
      assert.equal(i.amxBf16, false);
    });
  }
  test('KESTREL_BF16_GEMM naming a path the CPU (or KESTREL_SIMD) lacks is an error, not a fallback', { skip }, () => {
    const out = runChild(fileURLToPath(import.meta.url), { KESTREL_SIMD: 'avx2', KESTREL_BF16_GEMM: 'amx', KESTREL_HALF_MATMUL_PROBE: '1' });
    assert.match(out, /KESTREL_BF16_GEMM=amx: this CPU \(or KESTREL_SIMD\) lacks amx_bf16/);
  });
}
