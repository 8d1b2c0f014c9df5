// The creation, copy/cast, unary, unary_grad, binary and where kernels of every native device
// (cpu: native/creation.cc, copy.cc, elementwise.cc and the per-ISA spans ew_*.cc; cuda:
// native/cuda/kernels/creation.cu, copy.cu, elementwise.cu) against the float64 reference backend:
// sizes 1, 7, 33, 257, scalars and empty tensors, broadcast, transposed, step-sliced and expanded
// inputs, every supported dtype; special values; float16/bfloat16 rounding on bit patterns;
// Philox draws; and bad arguments (a thrown Error, never a crash). The AVX2 and baseline (SSE2)
// paths run in child processes with KESTREL_SIMD set (the addon reads the CPU features once).
//
// Tolerances: the reference computes in float64 and rounds once into the output dtype.
// - float32 add/sub/mul/div/max/min/compare/where/copy: exact (double rounding of +-*/ is
//   innocuous for float32, so the reference's result is the correctly rounded one too).
// - float32 exp/log/tanh/sigmoid/sqrt/...: rtol 5e-7 (4 ulp): the vector polynomials are ~1-2 ulp.
// - float32 silu/gelu and derivatives: rtol 2e-6, atol 1e-6 (their inner argument, e.g.
//   u = sqrt(2/pi)(x + 0.044715x^3), is rounded to float32 and then amplified by |du/dx|).
// - float64: rtol 1e-13, atol 1e-14 (libm against V8's Math functions, ~1 ulp, and the
//   reference's own erf series; gelu's 1 + erf cancels in both); integers: exact.
// - cuda float32: CUDA's expf/logf/tanhf/erff/sinf are within 2 ulp (CUDA C Programming Guide,
//   Mathematical Functions), so the transcendental tolerances are those of the CPU's vector code.
import { ALL_DEVICES, type Device, skipUnless } from '../devices.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import * as k from '../../src/index.js';
import { UNARY_OPS, type UnaryOp, ARITH_OPS, COMPARE_OPS } from '../../src/backend/kernels.js';
import { assertClose, seeded, seededTensor, runChild } from '../helpers.js';

const HAS_CPU = k.hasBackend('cpu');
const CHILD = process.env.KESTREL_EW_CHILD === '1';
type Backend = Device | 'ref';
/** The device the groups below run on (set by each test before it runs them). */
let DEV: Device = 'cpu';

// ---------------------------------------------------------------- inputs and views

const base = seededTensor;

interface Case { name: string; shape: number[]; view: (t: k.Tensor) => k.Tensor }

/** Layouts of a logical [r, c] (or 1-d / 0-d) operand: contiguous, transposed, step-sliced, expanded. */
function cases(): Case[] {
  const out: Case[] = [{ name: 'scalar', shape: [], view: (t) => t }, { name: 'empty', shape: [2, 0], view: (t) => t }];
  for (const n of [1, 7, 33, 257]) {
    out.push({ name: `[${n}]`, shape: [n], view: (t) => t });
    out.push({ name: `[3,${n}]^T`, shape: [3, n], view: (t) => t.t() });
    out.push({ name: `[${n},5] step 2`, shape: [n, 10], view: (t) => t.slice(1, 1, undefined, 2) });
    out.push({ name: `[1,${n}]->[4,${n}]`, shape: [1, n], view: (t) => t.expand([4, n]) });
    out.push({ name: `[2,${n},3] narrow`, shape: [2, n + 2, 3], view: (t) => t.narrow(1, 1, n) });
  }
  return out;
}

function compareBoth(what: string, f: (b: Backend) => k.Tensor, tol: { atol?: number; rtol?: number }): void {
  const got = f(DEV);
  const want = f('ref');
  assert.equal(got.dtype, want.dtype, `${what}: dtype`);
  assertClose(got, want, { ...tol, what });
}

// ---------------------------------------------------------------- unary

const POSITIVE = new Set<UnaryOp>(['log', 'sqrt', 'rsqrt']);
const SMOOTH_F32 = new Set<UnaryOp>(['silu', 'gelu_tanh', 'gelu_erf']);

function unaryTol(op: UnaryOp, dtype: k.DType, grad: boolean): { atol: number; rtol: number } {
  if (dtype === 'float64') return { atol: 1e-14, rtol: 1e-13 };
  if (SMOOTH_F32.has(op) || grad) return { atol: 1e-6, rtol: 2e-6 };
  if (op === 'sin' || op === 'cos') return { atol: 1e-7, rtol: 5e-7 };
  return { atol: 0, rtol: 5e-7 };
}

const PARAMS: Partial<Record<UnaryOp, [number, number][]>> = {
  pow_scalar: [[2, 0], [3, 0], [0.5, 0], [-1, 0], [-1.5, 0], [0, 0], [1, 0]],
  clamp: [[-0.3, 0.4], [-Infinity, 0.1], [0.2, Infinity]],
};

function unaryGroup(): void {
  for (const dtype of ['float32', 'float64'] as const)
    for (const op of UNARY_OPS)
      for (const [p0, p1] of PARAMS[op] ?? [[0, 0]]) {
        const [lo, hi] = POSITIVE.has(op) || (op === 'pow_scalar' && !Number.isInteger(p0)) ? [0.01, 5] : [-6, 6];
        for (const c of cases()) {
          const what = `${op}(${p0},${p1}) ${dtype} ${c.name}`;
          compareBoth(what, (b) => k.unary(op, c.view(base(c.shape, dtype, b, 3, lo, hi)), p0, p1), unaryTol(op, dtype, false));
        }
      }
  // Integer neg / abs / sign / clamp: exact, wrapping at the minimum (as the typed arrays do).
  for (const dtype of ['int32', 'int64'] as const)
    for (const [op, p0, p1] of [['neg', 0, 0], ['abs', 0, 0], ['sign', 0, 0], ['clamp', -20.5, 30.5], ['clamp', -Infinity, 7]] as const)
      for (const c of cases())
        compareBoth(`${op} ${dtype} ${c.name}`, (b) => k.unary(op, c.view(base(c.shape, dtype, b, 4, -100, 100)), p0, p1), { atol: 0, rtol: 0 });
  // int8 / uint8 / bool go through the op layer as they are (wrapping; bool stays x != 0).
  for (const dtype of ['int8', 'uint8', 'bool'] as const)
    for (const [op, p0, p1] of [['neg', 0, 0], ['abs', 0, 0], ['sign', 0, 0], ['clamp', -20.5, 30.5], ['clamp', 2, 1]] as const)
      for (const c of cases().slice(0, 8))
        compareBoth(`${op} ${dtype} ${c.name}`, (b) => k.unary(op, c.view(base(c.shape, dtype, b, 4, dtype === 'int8' ? -128 : 0, dtype === 'int8' ? 127 : 255)), p0, p1), { atol: 0, rtol: 0 });
  const minI32 = k.tensor([-2147483648, 2147483647, 0], { dtype: 'int32', backend: DEV });
  assert.deepEqual(k.neg(minI32).toArray(), [-2147483648, -2147483647, 0]);
  assert.deepEqual(k.unary('abs', minI32).toArray(), [-2147483648, 2147483647, 0]);
}

/** Special values through every float32 unary op and derivative, against the reference. */
function specialGroup(): void {
  const vals = [NaN, Infinity, -Infinity, 0, -0, 1e-40, -1e-40, 1e-20, 88.7, -88.7, 89, -104, 100, -100, 1e30, -1e30, 0.625, -0.625, 1.5, -3];
  for (const op of UNARY_OPS)
    for (const [p0, p1] of PARAMS[op] ?? [[0, 0]]) {
      const mk = (b: Backend) => k.tensor(vals, { dtype: 'float32', backend: b });
      const tol = { atol: 1e-37, rtol: unaryTol(op, 'float32', false).rtol };
      compareBoth(`${op}(${p0}) special values`, (b) => k.unary(op, mk(b), p0, p1), tol);
    }
}

function gradGroup(): void {
  for (const dtype of ['float32', 'float64'] as const)
    for (const op of UNARY_OPS)
      for (const [p0, p1] of PARAMS[op] ?? [[0, 0]]) {
        const [lo, hi] = POSITIVE.has(op) || (op === 'pow_scalar' && !Number.isInteger(p0)) ? [0.05, 5] : [-6, 6];
        for (const c of cases()) {
          const run = (b: Backend): k.Tensor => {
            const x = c.view(base(c.shape, dtype, b, 5, lo, hi));
            const dy = c.view(base(c.shape, dtype, b, 6, -2, 2));
            const dx = k.empty(x.shape, dtype, { backend: b });
            k.getBackend(b).kernels.unaryGrad(op, x, dy, dx, p0, p1);
            return dx;
          };
          compareBoth(`d ${op}(${p0},${p1}) ${dtype} ${c.name}`, run, unaryTol(op, dtype, true));
        }
      }
}

// ---------------------------------------------------------------- binary and where

interface BinCase { name: string; a: number[]; b: number[]; va: (t: k.Tensor) => k.Tensor; vb: (t: k.Tensor) => k.Tensor }

function binCases(): BinCase[] {
  const id = (t: k.Tensor) => t;
  const out: BinCase[] = [
    { name: 'scalars', a: [], b: [], va: id, vb: id },
    { name: 'empty', a: [0, 3], b: [3], va: id, vb: id },
  ];
  for (const n of [1, 7, 33, 257]) {
    out.push({ name: `[4,${n}] same`, a: [4, n], b: [4, n], va: id, vb: id });
    out.push({ name: `[4,${n}] + row [${n}]`, a: [4, n], b: [n], va: id, vb: id });
    out.push({ name: `[4,${n}] + scalar`, a: [4, n], b: [], va: id, vb: id });
    out.push({ name: `scalar + [${n}]`, a: [], b: [n], va: id, vb: id });
    out.push({ name: `[${n},1] + [1,5]`, a: [n, 1], b: [1, 5], va: id, vb: id });
    out.push({ name: `T [${n},3] + step-sliced`, a: [3, n], b: [n, 6], va: (t) => t.t(), vb: (t) => t.slice(1, 0, undefined, 2) });
    out.push({ name: `col [${n},1] + T`, a: [n, 1], b: [2, n], va: id, vb: (t) => t.t() });
  }
  return out;
}

function binaryGroup(): void {
  const ops = [...ARITH_OPS, ...COMPARE_OPS];
  for (const dtype of ['float32', 'float64', 'int32', 'int64'] as const) {
    const ints = dtype.startsWith('int');
    for (const op of ops) {
      // pow: positive bases for floats, small non-negative exponents for ints; ints divide by nonzero.
      const [alo, ahi] = op === 'pow' ? (ints ? [-5, 6] : [0.1, 3]) : ints ? [-50, 50] : [-4, 4];
      const [blo, bhi] = op === 'pow' ? (ints ? [0, 5] : [-2, 2]) : op === 'div' && ints ? [1, 20] : ints ? [-50, 50] : [-4, 4];
      // pow: both sides call a libm pow in double (1 ulp apart at most); the rest is exact.
      const tol = op === 'pow' && !ints ? { atol: 0, rtol: dtype === 'float32' ? 1.2e-7 : 1e-15 } : { atol: 0, rtol: 0 };
      for (const c of binCases()) {
        const run = (b: Backend): k.Tensor => {
          const x = c.va(base(c.a, dtype, b, 7, alo, ahi));
          const y = c.vb(base(c.b, dtype, b, 8, blo, bhi));
          return (COMPARE_OPS as readonly string[]).includes(op)
            ? k.compare(op as (typeof COMPARE_OPS)[number], x, y)
            : binaryOp(op as (typeof ARITH_OPS)[number], x, y);
        };
        compareBoth(`${op} ${dtype} ${c.name}`, run, tol);
      }
      if ((COMPARE_OPS as readonly string[]).includes(op)) {  // ties: an operand against itself
        const cmp = op as (typeof COMPARE_OPS)[number];
        compareBoth(`${op} ${dtype} ties`, (b) => { const x = base([5, 33], dtype, b, 7, -3, 3); return k.compare(cmp, x, x.t().t()); }, tol);
      }
      if (ints && op === 'div') {
        const q = k.div(k.tensor([7, -7, 5, -2147483648], { dtype, backend: DEV }), k.tensor([0, 2, -1, -1], { dtype, backend: DEV }));
        assert.equal(q.dtype, 'float32'); // true division: ints go through float32
      }
    }
  }
  // Integer kernel edge cases called directly: division by zero gives 0, MIN / -1 wraps, pow wraps.
  const kern = k.getBackend(DEV).kernels;
  for (const dtype of ['int32', 'int64'] as const) {
    const min = dtype === 'int32' ? -2147483648 : -9223372036854775808; // -2^63 as toArray() gives it
    const a = k.tensor([7, -7, 0, dtype === 'int32' ? min : -(2n ** 63n), 3, -1, 2], { dtype, backend: DEV });
    const b = k.tensor([0, 2, 0, -1, 64, -3, -2], { dtype, backend: DEV });
    const out = k.empty([7], dtype, { backend: DEV });
    kern.binary('div', a, b, out);
    assert.deepEqual(out.toArray(), [0, -3, 0, min, 0, 0, -1]);
    kern.binary('pow', a, b, out);
    const pw = out.toArray() as number[];
    assert.deepEqual(pw.slice(0, 3), [1, 49, 1]);
    assert.deepEqual(pw.slice(5), [-1, 0]);
  }
  // NaN: maximum/minimum propagate it, comparisons see it as unordered.
  const nan = (b: Backend) => k.tensor([NaN, 1, NaN, -0, 2], { backend: b });
  const other = (b: Backend) => k.tensor([1, NaN, NaN, 0, 2], { backend: b });
  for (const op of ['maximum', 'minimum'] as const)
    compareBoth(`${op} NaN`, (b) => binaryOp(op, nan(b), other(b)), { atol: 0, rtol: 0 });
  for (const op of COMPARE_OPS) compareBoth(`${op} NaN`, (b) => k.compare(op, nan(b), other(b)), { atol: 0, rtol: 0 });
}

function binaryOp(op: (typeof ARITH_OPS)[number], a: k.Tensor, b: k.Tensor): k.Tensor {
  switch (op) {
    case 'add': return k.add(a, b);
    case 'sub': return k.sub(a, b);
    case 'mul': return k.mul(a, b);
    case 'div': return k.div(a, b);
    case 'pow': return k.pow(a, b);
    case 'maximum': return k.maximum(a, b);
    case 'minimum': return k.minimum(a, b);
  }
}

function whereGroup(): void {
  for (const dtype of k.DTYPES)
    for (const c of binCases()) {
      const run = (b: Backend): k.Tensor => {
        const x = c.va(base(c.a, dtype, b, 9, -50, 50));
        const y = c.vb(base(c.b, dtype, b, 10, -50, 50));
        const cond = k.compare('gt', base([...x.shape], 'float32', b, 11), 0);
        return k.where(dtype === 'uint8' ? cond.to('uint8') : cond, x, y);
      };
      compareBoth(`where ${dtype} ${c.name}`, run, { atol: 0, rtol: 0 });
    }
}

// ---------------------------------------------------------------- creation

function creationGroup(): void {
  for (const dtype of k.DTYPES) {
    for (const v of [0, 1, -2.5, 3.75, 1e-3, 100]) {
      if (dtype === 'uint8' && v < 0) continue;
      compareBoth(`fill ${dtype} ${v}`, (b) => k.full([3, 37], v, { dtype, backend: b }), { atol: 0, rtol: 0 });
    }
    compareBoth(`eye ${dtype}`, (b) => k.eye(5, 7, { dtype, backend: b }), { atol: 0, rtol: 0 });
    if (dtype !== 'bool') {
      compareBoth(`arange ${dtype}`, (b) => k.arange(0, 100, 1, { dtype, backend: b }), { atol: 0, rtol: 0 });
      if (dtype.startsWith('float') || dtype === 'bfloat16')
        compareBoth(`arange ${dtype} frac`, (b) => k.arange(-1, 2.3, 0.1, { dtype, backend: b }), { atol: 0, rtol: 0 });
    }
  }
  // Strided fill into a step-sliced view.
  const cpu = k.zeros([4, 9], { backend: DEV });
  k.getBackend(DEV).kernels.fill(cpu.slice(1, 1, undefined, 3), 2);
  assert.deepEqual(cpu.toArray(), Array.from({ length: 4 }, () => [0, 2, 0, 0, 2, 0, 0, 2, 0]));
}

function randomGroup(): void {
  for (const seed of [0, 42, 2 ** 40 + 7])
    for (const n of [1, 7, 33, 257, 10007])
      for (const dtype of ['float32', 'float64'] as const) {
        const draw = (b: Backend, dist: 'rand' | 'randn') => {
          const g = new k.Generator(seed);
          g.next('uniform', 13); // a non-zero counter
          return dist === 'rand' ? k.rand([n], { dtype, backend: b, generator: g }) : k.randn([n], { dtype, backend: b, generator: g });
        };
        const u = draw(DEV, 'rand').toTypedArray();
        const ur = draw('ref', 'rand').toTypedArray();
        assert.deepEqual(u, ur, `uniform seed ${seed} n ${n} ${dtype}: not bit-identical`);
        compareBoth(`normal seed ${seed} n ${n} ${dtype}`, (b) => draw(b, 'randn'), { atol: dtype === 'float32' ? 1e-6 : 1e-12, rtol: 0 });
      }
}

// ---------------------------------------------------------------- copy / cast

function castGroup(): void {
  for (const from of k.DTYPES)
    for (const to of k.DTYPES) {
      // Values every target holds exactly or rounds the same way (out-of-range float -> int
      // saturates here but wraps in the reference; see the saturation test below).
      const unsigned = to === 'uint8' || (from === 'uint8');
      const [lo, hi] = unsigned ? [0, 120] : [-120, 120];
      for (const c of cases()) {
        const run = (b: Backend) => k.to(c.view(base(c.shape, from, b, 12, lo, hi)), to);
        compareBoth(`copy ${from} -> ${to} ${c.name}`, run, { atol: 0, rtol: 0 });
      }
    }
  // Transposed and permuted copies large enough for the tiled path, every element size.
  for (const dtype of ['float32', 'float64', 'bfloat16', 'int8'] as const)
    for (const [r, c] of [[40, 70], [257, 33], [9, 300]]) {
      compareBoth(`contiguous(T) ${dtype} [${r},${c}]`, (b) => base([r, c], dtype, b, 13, -9, 9).t().contiguous(), { atol: 0, rtol: 0 });
      compareBoth(`permute ${dtype}`, (b) => base([3, r, c], dtype, b, 14, -9, 9).permute([2, 0, 1]).contiguous(), { atol: 0, rtol: 0 });
      compareBoth(`T cast ${dtype}`, (b) => k.to(base([r, c], dtype, b, 15, -9, 9).t(), 'float32'), { atol: 0, rtol: 0 });
    }
  // Into a strided destination (cat writes into narrowed views).
  compareBoth('cat', (b) => k.cat([base([3, 5], 'float32', b, 16), base([3, 7], 'float32', b, 17).t().t()], 1), { atol: 0, rtol: 0 });
  // float -> int: trunc toward zero, NaN -> 0, saturation at the type's range.
  const f = k.tensor([2.9, -2.9, NaN, Infinity, -Infinity, 1e10, -1e10, 300, -300, 0.5], { backend: DEV });
  assert.deepEqual(k.to(f, 'int32').toArray(), [2, -2, 0, 2147483647, -2147483648, 2147483647, -2147483648, 300, -300, 0]);
  assert.deepEqual(k.to(f, 'int8').toArray(), [2, -2, 0, 127, -128, 127, -128, 127, -128, 0]);
  assert.deepEqual(k.to(f, 'uint8').toArray(), [2, 0, 0, 255, 0, 255, 0, 255, 0, 0]);
  assert.deepEqual(k.to(f, 'bool').toArray(), [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
  const big = k.to(k.tensor([1e30, -1e30], { dtype: 'float64', backend: DEV }), 'int64').toTypedArray() as BigInt64Array;
  assert.deepEqual([...big], [9223372036854775807n, -9223372036854775808n]);
  // The reference agrees for int64 (its other integer types wrap out-of-range values instead).
  const odd = (b: Backend) => k.to(k.tensor([NaN, Infinity, -Infinity, 1e30, -1e30, -2.5], { dtype: 'float64', backend: b }), 'int64');
  assert.deepEqual(odd(DEV).toTypedArray(), odd('ref').toTypedArray());
  // int -> int wraps; int64 -> float rounds through double as the reference does.
  assert.deepEqual(k.to(k.tensor([300, -1, 256], { dtype: 'int32', backend: DEV }), 'uint8').toArray(), [44, 255, 0]);
  const i64 = k.tensor([2n ** 60n + 2n ** 36n + 1n, -(2n ** 53n) - 1n], { dtype: 'int64', backend: DEV });
  compareBoth('int64 -> float32 double rounding', (b) => k.to(b === DEV ? i64 : i64.to('ref'), 'float32'), { atol: 0, rtol: 0 });
}

/** float16 / bfloat16 rounding against src/tensor/half.ts on bit patterns: ties, subnormals, overflow, NaN. */
function halfGroup(): void {
  const bits = new Uint32Array(20000);
  let s = 12345;
  for (let i = 0; i < bits.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    bits[i] = s;
  }
  const special = [
    0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xffc12345, 0x7fbfffff, // zeros, inf, NaNs
    0x33000000, 0x33000001, 0x337fffff, 0x33800000, 0x387fc000, 0x387fe000, 0x38800000, // f16 subnormal edges / ties
    0x477fe000, 0x477ff000, 0x477fefff, 0x47800000, 0x3f801000, 0x3f803000, 0x3f800fff, // f16 overflow, ties to even
    0x3f808000, 0x3f818000, 0x3f807fff, 0x00000001, 0x807fffff, 0x7f7fffff, 0x7f7f8000, // bf16 ties, f32 subnormals
  ];
  const all = Uint32Array.from([...special, ...bits]);
  const f32 = new Float32Array(all.buffer);
  const x = k.tensor(f32, { backend: DEV });
  const h = k.to(x, 'float16').toTypedArray() as Uint16Array;
  const bf = k.to(x, 'bfloat16').toTypedArray() as Uint16Array;
  for (let i = 0; i < f32.length; i++) {
    if (h[i] !== k.f32ToF16(f32[i])) assert.fail(`f32 0x${all[i].toString(16)} -> f16 0x${h[i].toString(16)}, want 0x${k.f32ToF16(f32[i]).toString(16)}`);
    if (bf[i] !== k.f32ToBf16(f32[i])) assert.fail(`f32 0x${all[i].toString(16)} -> bf16 0x${bf[i].toString(16)}, want 0x${k.f32ToBf16(f32[i]).toString(16)}`);
  }
  // f64 -> f16 rounds through float32 first (as the reference does).
  const d = Float64Array.from([1 + 2 ** -11 + 2 ** -40, 65519.99, 2 ** -25 + 2 ** -60, 1e-300]);
  const hd = k.to(k.tensor(d, { dtype: 'float64', backend: DEV }), 'float16').toTypedArray() as Uint16Array;
  assert.deepEqual([...hd], [...d].map((v) => k.f32ToF16(v)));
  // Every 16-bit pattern back to float32, bit for bit (NaN payloads included; JS quiets a
  // signalling NaN when it reads one out of a Float32Array, so the quiet bit is not compared).
  const every = Uint16Array.from({ length: 65536 }, (_, i) => i);
  for (const [dtype, dec] of [['float16', k.f16ToF32], ['bfloat16', k.bf16ToF32]] as const) {
    const back = new Uint32Array((k.to(k.tensor(every, { dtype, backend: DEV }), 'float32').toTypedArray() as Float32Array).buffer);
    const want = new Uint32Array(Float32Array.from(every, (v) => dec(v)).buffer);
    for (let i = 0; i < 65536; i++)
      if (back[i] !== want[i] && !(Number.isNaN(dec(i)) && ((back[i] | 0x400000) >>> 0) === want[i])) assert.fail(`${dtype} 0x${i.toString(16)} -> f32 0x${back[i].toString(16)}, want 0x${want[i].toString(16)}`);
  }
}

/**
 * Outputs of 16 MB and more are written with non-temporal stores (native/ew_isa.h kStreamBytes):
 * the same values as the cached path, which pieces below the threshold take.
 */
function streamingGroup(): void {
  const n = (17 << 20) / 4 + 5;
  const pieces = (t: k.Tensor, f: (p: k.Tensor) => k.Tensor): Float32Array | Float64Array => {
    const m = t.shape[0];
    const at = (i: number) => Math.floor((i * m) / 4);
    return k.cat([0, 1, 2, 3].map((i) => f(t.narrow(0, at(i), at(i + 1) - at(i)))), 0).toTypedArray() as Float32Array;
  };
  const x = k.randn([n], { backend: DEV, generator: new k.Generator(1) });
  const y = k.randn([n], { backend: DEV, generator: new k.Generator(2) }).narrow(0, 0, n); // same size
  const xs = x.narrow(0, 1, n - 1); // a misaligned input
  for (const op of ['exp', 'silu', 'gelu_tanh', 'neg'] as const) {
    assert.deepEqual(k.unary(op, x).toTypedArray(), pieces(x, (p) => k.unary(op, p)), `${op} streamed`);
    assert.deepEqual(k.unary(op, xs).toTypedArray(), pieces(xs, (p) => k.unary(op, p)), `${op} streamed, misaligned input`);
  }
  const dx = k.empty([n], 'float32', { backend: DEV });
  k.getBackend(DEV).kernels.unaryGrad('tanh', x, y, dx, 0, 0);
  const dxs = pieces(x, (p) => { const o = k.empty(p.shape, 'float32', { backend: DEV }); k.getBackend(DEV).kernels.unaryGrad('tanh', p, y.narrow(0, p.layout.offset, p.shape[0]), o, 0, 0); return o; });
  assert.deepEqual(dx.toTypedArray(), dxs, 'tanh grad streamed');
  for (const [name, f] of [['add', k.add], ['maximum', k.maximum], ['div', k.div]] as const) {
    assert.deepEqual(f(x, y).toTypedArray(), pieces(x, (p) => f(p, y.narrow(0, p.layout.offset, p.shape[0]))), `${name} streamed`);
    assert.deepEqual(f(xs, 2.5).toTypedArray(), pieces(xs, (p) => f(p, 2.5)), `${name} scalar streamed`);
  }
  const x64 = x.to('float64');
  assert.deepEqual(k.mul(x64, x64).toTypedArray(), pieces(x64, (p) => k.mul(p, p)), 'float64 mul streamed');
}

// ---------------------------------------------------------------- errors

function errorGroup(): void {
  const kern = k.getBackend(DEV).kernels;
  const t = (shape: number[], dtype: k.DType = 'float32') => k.zeros(shape, { dtype, backend: DEV });
  const throwsWith = (f: () => void, re: RegExp) => assert.throws(f, (e: Error) => e instanceof Error && re.test(e.message), `expected ${re}`);
  throwsWith(() => kern.unary('exp', t([3]), t([4]), 0, 0), /unary: x \[3\] and out \[4\]/);
  throwsWith(() => kern.unary('exp', t([3], 'int32'), t([3], 'int32'), 0, 0), /unary: exp does not support dtype int32/);
  throwsWith(() => kern.unary('exp', t([3]), t([3], 'float64'), 0, 0), /unary: out dtype float64/);
  throwsWith(() => kern.unary('exp', t([3]), t([3, 2]).t().select(0, 0), 0, 0), /out \[3\] must be contiguous/);
  throwsWith(() => kern.unaryGrad('tanh', t([3]), t([3]), t([2]), 0, 0), /unary_grad: x \[3\] and dx \[2\]/);
  throwsWith(() => kern.binary('add', t([3]), t([3], 'float64'), t([3]), ), /binary: add needs a and b of one dtype/);
  throwsWith(() => kern.binary('lt', t([3]), t([3]), t([3])), /binary: lt writes bool, out is float32/);
  throwsWith(() => kern.binary('add', t([3]), t([2]), t([3])), /binary: b \[2\] and out \[3\]/);
  throwsWith(() => kern.where(t([3]), t([3]), t([3]), t([3])), /where: cond has dtype float32/);
  throwsWith(() => kern.copy(t([3]), t([4])), /copy: src \[3\] and dst \[4\]/);
  throwsWith(() => kern.random(t([3], 'int32'), 'uniform', 0, 0), /random: out has dtype int32/);
  throwsWith(() => kern.arange(t([3, 2]).t(), 0, 1), /arange: out \[2,3\] must be contiguous/);
}

const GROUPS: Record<string, () => void> = {
  unary: unaryGroup, special: specialGroup, grad: gradGroup, binary: binaryGroup, where: whereGroup,
  creation: creationGroup, random: randomGroup, cast: castGroup, half: halfGroup, streaming: streamingGroup,
  errors: errorGroup,
};

// ---------------------------------------------------------------- entry points

/** The groups that run per-ISA code (ew_<isa>.cc), repeated under each KESTREL_SIMD level. */
const SIMD_GROUPS = ['unary', 'special', 'grad', 'binary', 'cast', 'half', 'streaming'];

if (CHILD) {
  const addon = (await import('../../src/backend/addon.js')).loadNative()!;
  for (const name of SIMD_GROUPS) k.tidy(() => GROUPS[name]());
  console.log(`ok ${JSON.stringify(addon.info())}`);
} else {
  for (const device of ALL_DEVICES)
    for (const [name, f] of Object.entries(GROUPS))
      test(`${device} elementwise: ${name}`, { skip: skipUnless(device) }, () => {
        DEV = device;
        k.tidy(() => f());
      });
  const skip = HAS_CPU ? false : 'cpu backend unavailable (native addon not built: run npm run build)';
  test('cpu elementwise: 1 thread', { skip }, async () => {
    DEV = 'cpu'; // the tests before may have left 'cuda'
    const addon = (await import('../../src/backend/addon.js')).loadNative()!;
    addon.setThreads(1);
    try {
      k.tidy(() => { binaryGroup(); castGroup(); });
    } finally {
      addon.setThreads(2);
    }
  });
  for (const simd of ['avx2', 'scalar'])
    test(`cpu elementwise: per-ISA groups under KESTREL_SIMD=${simd} (child process)`, { skip }, () => {
      const stdout = runChild(fileURLToPath(import.meta.url), { KESTREL_SIMD: simd, KESTREL_EW_CHILD: '1' });
      const info = JSON.parse(stdout.trim().split('\n').pop()!.replace(/^ok /, '')) as { avx2: boolean; avx512f: boolean };
      assert.equal(info.avx512f, false);
      if (simd === 'scalar') assert.equal(info.avx2, false);
    });
}
