// Half-precision compute on every device. An op on float16/bfloat16 inputs is defined as the
// float32 op on the upcast inputs, rounded once to the half type; a halfElementwise backend gets
// there by handing the half tensors to its kernels (cuda's compute in float32 registers, the cpu's
// widen into float32 scratch for the call: src/backend/cpu/half_operands.ts). For every op that
// changed (unary, binary arithmetic and comparisons, sum, glu, rmsNorm, rope, softmax), on bf16
// and f16 inputs of odd sizes (1, 7, 33, 257) and non-contiguous views:
// - forward and input gradients equal, bit for bit, the same op run on float32 copies of the inputs
//   with its result cast back (the upcast path), on the same device;
// - cuda equals cpu bit for bit where both devices' float32 kernels round correctly (+ - * /,
//   comparisons, exact functions), else within one unit in the last place of the half type: the
//   devices' float32 exp/tanh/erf and reduction orders differ by a few float32 ulp, which moves a
//   value that sits near a half rounding boundary to the neighbouring half value (or, where a
//   gradient cancels to ~1e-7, leaves a difference below 1e-5).
// The cuda kernels name the operand of a mismatched dtype. On both devices the half ops hold no
// float32 copies once they return (the memory counters see only their outputs; on cuda not even at
// the peak), so a training step of a bf16 model (or under bf16 autocast) holds fewer activation
// bytes than the upcast path, with the same loss.
import { ALL_DEVICES, type Device, skipUnless } from '../devices.js';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as k from '../../src/index.js';
import { UNARY_OPS, type UnaryOp } from '../../src/backend/kernels.js';
import { decoderConfig } from '../../src/models/registry.js';
import { assertClose, seededTensor } from '../helpers.js';

type Half = 'bfloat16' | 'float16';
const HALVES: readonly Half[] = ['bfloat16', 'float16'];
const SIZES = [1, 7, 33, 257];

interface Input {
  shape: number[];
  lo?: number;
  hi?: number;
  /** a float32 input beside the half ones (a master weight) */
  f32?: boolean;
}

interface Case {
  name: string;
  inputs: Input[];
  /** the op on the leaves (views are taken here, so the op sees non-contiguous inputs) */
  f: (xs: k.Tensor[]) => k.Tensor;
  /** every float32 step correctly rounded on both devices: cuda must equal cpu bit for bit */
  exact?: boolean;
}

/** A result as comparable raw bits (half and bool as they are stored, float32 as its bit pattern). */
interface Result {
  dtype: k.DType;
  bits: number[];
}

function resultOf(t: k.Tensor): Result {
  const raw = t.toTypedArray();
  const bits = raw instanceof Float32Array ? new Uint32Array(raw.buffer, raw.byteOffset, raw.length) : raw;
  return { dtype: t.dtype, bits: Array.from(bits as ArrayLike<number>, Number) };
}

/**
 * Forward and input gradients of c on `dtype` inputs; upcast: the op runs on float32 copies and
 * its result is cast back to the dtype the direct run produced (`outDType`).
 */
function run(device: Device, dtype: Half, c: Case, upcast: boolean, outDType?: k.DType): Result[] {
  return k.tidy(() => {
    const leaves = c.inputs.map((inp, i) =>
      seededTensor(inp.shape, inp.f32 ? 'float32' : dtype, device, 11 + 7 * i, inp.lo ?? -3, inp.hi ?? 3).requiresGrad_());
    let y = c.f(upcast ? leaves.map((t) => t.to('float32')) : leaves);
    if (upcast && outDType && y.dtype !== outDType) y = y.to(outDType);
    if (y.requiresGrad) y.backward(seededTensor([...y.shape], y.dtype, device, 5, -2, 2));
    return [resultOf(y), ...leaves.map((l) => (l.grad ? resultOf(l.grad) : { dtype: l.dtype, bits: [] }))];
  });
}

const PART = (i: number): string => (i === 0 ? 'forward' : `grad ${i - 1}`);

// Half results may differ by one ulp on a GPU: NVRTC fuses a multiply and an add (FMA) where the
// shape of the code allows, and the half kernel and the float32 one are different code (seen on an
// H200: one fp16 rmsNorm weight gradient of 0x45 against 0x46). Elsewhere they are bit-identical.
function assertBits(got: Result[], want: Result[], what: string): void {
  got.forEach((g, i) => {
    const w = want[i];
    assert.equal(g.dtype, w.dtype, `${what} ${PART(i)}: dtype`);
    assert.equal(g.bits.length, w.bits.length, `${what} ${PART(i)}: length`);
    const half = g.dtype === 'bfloat16' || g.dtype === 'float16';
    const bad = g.bits.findIndex((b, j) => b !== w.bits[j] && !(half && Math.abs(ordinal(b) - ordinal(w.bits[j])) <= 1));
    if (bad >= 0) assert.fail(`${what} ${PART(i)}: [${bad}] bits 0x${g.bits[bad].toString(16)} != 0x${w.bits[bad].toString(16)}`);
  });
}

/** A half bit pattern as a position on the number line (adjacent values differ by 1). */
const ordinal = (b: number): number => (b & 0x8000 ? -(b & 0x7fff) : b);
const isNaNBits = (b: number, dtype: k.DType): boolean =>
  dtype === 'bfloat16' ? (b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0 : (b & 0x7c00) === 0x7c00 && (b & 0x3ff) !== 0;
const f32Of = (b: number): number => new Float32Array(new Uint32Array([b]).buffer)[0];
const halfValue = (b: number, dtype: k.DType): number =>
  k.tensor(new Uint16Array([b]), { dtype }).to('float32').item();

/**
 * cuda against cpu: exact bits, or half values at most one ulp or 1e-5 apart (the inputs are O(1):
 * a gradient that cancels to ~1e-7 keeps the devices' float32 differences), float32 outputs rtol 1e-4.
 */
function assertNear(got: Result[], want: Result[], exact: boolean, what: string): void {
  if (exact) return assertBits(got, want, what);
  got.forEach((g, i) => {
    const w = want[i];
    assert.equal(g.dtype, w.dtype, `${what} ${PART(i)}: dtype`);
    g.bits.forEach((b, j) => {
      const v = w.bits[j];
      if (b === v) return;
      if (g.dtype === 'float32') {
        const [x, y] = [f32Of(b), f32Of(v)];
        if (Math.abs(x - y) <= 1e-5 + 1e-4 * Math.abs(y)) return;
        assert.fail(`${what} ${PART(i)}: [${j}] ${x} != ${y}`);
      }
      const near = Math.abs(ordinal(b) - ordinal(v)) <= 1 || Math.abs(halfValue(b, g.dtype) - halfValue(v, g.dtype)) <= 1e-5;
      if (g.dtype === 'bool' || isNaNBits(b, g.dtype) !== isNaNBits(v, g.dtype) || !near)
        assert.fail(`${what} ${PART(i)}: [${j}] bits 0x${b.toString(16)} vs cpu 0x${v.toString(16)}`);
    });
  });
}

// ---------------------------------------------------------------- the cases

const POSITIVE = new Set<UnaryOp>(['log', 'sqrt', 'rsqrt']);
const EXACT_UNARY = new Set<UnaryOp>(['neg', 'abs', 'relu', 'floor', 'sign', 'clamp', 'sqrt']);
const PARAMS: Partial<Record<UnaryOp, [number, number][]>> = { pow_scalar: [[2, 0], [0.5, 0], [-1.5, 0]], clamp: [[-0.5, 0.75]] };

/** [n] contiguous, and a [3, n] operand read through a transpose of its [n, 3] storage. */
function unaryCases(): Case[] {
  const out: Case[] = [];
  for (const op of UNARY_OPS)
    for (const [p0, p1] of PARAMS[op] ?? [[0, 0]]) {
      const pos = POSITIVE.has(op) || (op === 'pow_scalar' && !Number.isInteger(p0));
      const [lo, hi] = pos ? [0.05, 5] : [-5, 5];
      const exact = EXACT_UNARY.has(op) || (op === 'pow_scalar' && p0 === 2);
      for (const n of SIZES) {
        out.push({ name: `${op}(${p0}) [${n}]`, inputs: [{ shape: [n], lo, hi }], f: ([x]) => k.unary(op, x, p0, p1), exact });
        out.push({ name: `${op}(${p0}) [3,${n}]^T`, inputs: [{ shape: [n, 3], lo, hi }], f: ([x]) => k.unary(op, x.t(), p0, p1), exact });
      }
    }
  return out;
}

const ARITH = { add: k.add, sub: k.sub, mul: k.mul, div: k.div, maximum: k.maximum, minimum: k.minimum } as const;
const COMPARE = ['eq', 'ne', 'lt', 'le', 'gt', 'ge'] as const;

function binaryCases(): Case[] {
  const out: Case[] = [];
  for (const n of SIZES) {
    for (const [name, fn] of Object.entries(ARITH)) {
      // same shape (a transposed), a broadcast row, a step-sliced column broadcast: gradients summed to shape
      out.push({ name: `${name} [3,${n}]^T [3,${n}]`, inputs: [{ shape: [n, 3] }, { shape: [3, n] }], f: ([a, b]) => fn(a.t(), b), exact: true });
      out.push({ name: `${name} [3,${n}] [${n}]`, inputs: [{ shape: [3, n] }, { shape: [n] }], f: ([a, b]) => fn(a, b) });
      out.push({ name: `${name} [6,1] step 2 [${n}]`, inputs: [{ shape: [12, 1] }, { shape: [n] }], f: ([a, b]) => fn(a.slice(0, 0, undefined, 2), b) });
    }
    // max/min ties (an operand against itself and a rounded copy) split the gradient
    out.push({ name: `maximum ties [${n}]`, inputs: [{ shape: [n] }], f: ([a]) => k.maximum(a, a), exact: true });
    out.push({ name: `pow [3,${n}] [3,${n}]^T`, inputs: [{ shape: [3, n], lo: 0.1, hi: 3 }, { shape: [n, 3], lo: -2, hi: 2 }], f: ([a, b]) => k.pow(a, b.t()) });
    // number operands exact in both half types, so that the float32 run sees the same values (one
    // op per case: a chain of half ops rounds after each, its float32 run only at the end)
    const scalarOps: [string, (x: k.Tensor) => k.Tensor][] = [
      ['mul(x, 0.375)', (x) => k.mul(x, 0.375)], ['add(x, 2)', (x) => k.add(x, 2)],
      ['sub(1.5, x)', (x) => k.sub(1.5, x)], ['div(x, -0.75)', (x) => k.div(x, -0.75)], ['div(3, x)', (x) => k.div(3, x)],
    ];
    for (const [name, f] of scalarOps) out.push({ name: `${name} [${n}]`, inputs: [{ shape: [n], lo: 0.1, hi: 4 }], f: ([x]) => f(x), exact: true });
    for (const op of COMPARE) {
      out.push({ name: `${op} [3,${n}] [${n}]`, inputs: [{ shape: [3, n], lo: -1, hi: 1 }, { shape: [n], lo: -1, hi: 1 }], f: ([a, b]) => k.compare(op, a, b), exact: true });
      out.push({ name: `${op} self [${n}]`, inputs: [{ shape: [n] }], f: ([a]) => k.compare(op, a, a), exact: true });
    }
    // promotion with float32 (the half operand is cast), and an integer operand beside a half one
    // (upcast to float32, where 257 is exact and half would round it)
    out.push({ name: `add half f32 [${n}]`, inputs: [{ shape: [n] }, { shape: [n], f32: true }], f: ([a, b]) => k.add(a, b), exact: true });
    for (const [name, fn] of [['add', k.add], ['mul', k.mul]] as const)
      out.push({ name: `${name} half int32 [${n}]`, inputs: [{ shape: [n] }], exact: true,
        f: ([a]) => fn(a, k.full([n], 257, { dtype: 'int32', backend: a.backendName })) });
  }
  return out;
}

function reduceCases(): Case[] {
  const out: Case[] = [];
  for (const n of SIZES) {
    out.push({ name: `sum all [3,${n}]^T`, inputs: [{ shape: [n, 3] }], f: ([x]) => k.sum(x.t()) });
    out.push({ name: `sum dim 0 [3,${n}]^T`, inputs: [{ shape: [n, 3] }], f: ([x]) => k.sum(x.t(), 0) });
    out.push({ name: `sum dim 1 [3,${n}] step 2`, inputs: [{ shape: [3, 2 * n] }], f: ([x]) => k.sum(x.slice(1, 0, undefined, 2), 1, true) });
    out.push({ name: `max dim 1 [3,${n}]`, inputs: [{ shape: [3, n], lo: -1, hi: 1 }], f: ([x]) => k.max(x, 1), exact: true });
  }
  return out;
}

function fusedCases(): Case[] {
  const out: Case[] = [];
  for (const act of ['silu', 'gelu_tanh', 'gelu'] as const)
    for (const F of SIZES) {
      // the halves of a fused gate_up projection (strided rows), and two transposed operands
      out.push({ name: `glu ${act} halves [3,${F}]`, inputs: [{ shape: [3, 2 * F] }], f: ([gu]) => k.glu(gu.narrow(1, 0, F), gu.narrow(1, F, F), act) });
      out.push({ name: `glu ${act} [${F},5]^T`, inputs: [{ shape: [5, F] }, { shape: [5, F] }], f: ([g, u]) => k.glu(g.t(), u.t(), act) });
    }
  // rows x D: a row per warp (D <= 1024) and per block; more rows than one block's, several blocks' weight partials
  const shapes = [[1, 1], [7, 1], [1, 257], [7, 33], [33, 7], [300, 33], [3, 1100]];
  for (const [rows, D] of shapes) {
    const x = { shape: [rows, D] };
    out.push({ name: `rmsNorm half weight [${rows},${D}]`, inputs: [x, { shape: [D] }], f: ([a, w]) => k.rmsNorm(a, w, { eps: 1e-5 }) });
    out.push({ name: `rmsNorm f32 weight offset 1 [${rows},${D}]`, inputs: [x, { shape: [D], f32: true }], f: ([a, w]) => k.rmsNorm(a, w, { offset: 1 }) });
    out.push({ name: `rmsNorm no weight [${D},${rows}]^T`, inputs: [{ shape: [D, rows] }], f: ([a]) => k.rmsNorm(a.t(), null) });
    for (const log of [false, true]) {
      const sm = log ? k.logSoftmax : k.softmax;
      out.push({ name: `${log ? 'logSoftmax' : 'softmax'} -1 [${rows},${D}]`, inputs: [x], f: ([a]) => sm(a, -1) });
      out.push({ name: `${log ? 'logSoftmax' : 'softmax'} 0 [${D},${rows}]`, inputs: [{ shape: [D, rows] }], f: ([a]) => sm(a, 0) });
    }
  }
  // rope on q/k-like views: [B, T, H, hd] storage transposed to [B, H, T, hd]; float32 tables
  for (const [B, H, T, hd] of [[1, 1, 1, 2], [2, 3, 7, 8], [1, 2, 33, 66]])
    for (const interleaved of [false, true])
      out.push({
        name: `rope ${interleaved ? 'interleaved' : 'half'} [${B},${H},${T},${hd}]`,
        inputs: [{ shape: [B, T, H, hd] }],
        f: ([x]) => {
          const pos = k.arange(0, B * T, 1, { backend: x.backendName }).reshape([B, T]);
          const { cos, sin } = k.rotaryTables(pos, hd, 500);
          return k.rope(x.transpose(1, 2), cos, sin, { interleaved });
        },
      });
  return out;
}

const GROUPS: Record<string, () => Case[]> = { unary: unaryCases, binary: binaryCases, reduce: reduceCases, fused: fusedCases };

// ---------------------------------------------------------------- the tests

for (const device of ALL_DEVICES)
  describe(`half compute = upcast path (${device})`, { skip: skipUnless(device) }, () => {
    for (const [group, cases] of Object.entries(GROUPS))
      test(`${group}: bf16/f16 forward and gradients equal float32 on upcast inputs, rounded`, () => {
        for (const dtype of HALVES)
          for (const c of cases()) {
            const got = run(device, dtype, c, false);
            assertBits(got, run(device, dtype, c, true, got[0].dtype), `${device} ${dtype} ${c.name}`);
          }
      });
  });

const both = skipUnless('cpu') || skipUnless('cuda');
describe('half compute: cuda = cpu', { skip: both || !ALL_DEVICES.includes('cuda') || !ALL_DEVICES.includes('cpu') }, () => {
  for (const [group, cases] of Object.entries(GROUPS))
    test(`${group}: bf16/f16 on cuda and cpu (both kernels take half)`, () => {
      assert.equal(k.getBackend('cuda').halfElementwise, true);
      assert.equal(k.getBackend('cpu').halfElementwise, true);
      for (const dtype of HALVES)
        for (const c of cases()) assertNear(run('cuda', dtype, c, false), run('cpu', dtype, c, false), c.exact ?? false, `${dtype} ${c.name}`);
    });
});

describe('half kernels: mismatched operands are clear errors (cuda)', { skip: skipUnless('cuda') || !ALL_DEVICES.includes('cuda') }, () => {
  test('weights, outputs and tables of the wrong dtype name the kernel and operand', () => {
    k.tidy(() => {
      const kern = k.getBackend('cuda').kernels;
      const z = (shape: number[], dtype: k.DType): k.Tensor => k.zeros(shape, { dtype, backend: 'cuda' });
      const [xb, xh] = [z([2, 4], 'bfloat16'), z([2, 4], 'float16')];
      const cases: [RegExp, () => void][] = [
        [/rms_norm: weight has dtype float16; it must be x's \(bfloat16\) or float32/, () => kern.rmsNorm(xb, z([4], 'float16'), 1e-5, 0, z([2, 4], 'bfloat16'), z([2], 'float32'))],
        [/rms_norm: rstd must be float32/, () => kern.rmsNorm(xb, null, 1e-5, 0, z([2, 4], 'bfloat16'), z([2], 'bfloat16'))],
        [/rms_norm: out has dtype float32, the input bfloat16/, () => kern.rmsNorm(xb, null, 1e-5, 0, z([2, 4], 'float32'), z([2], 'float32'))],
        [/rms_norm_backward: dweight has dtype bfloat16, the weight float32/,
          () => kern.rmsNormBackward(xb, z([4], 'float32'), 0, z([2], 'float32'), xb, z([2, 4], 'bfloat16'), z([4], 'bfloat16'))],
        [/softmax: out has dtype float16; it must be x's \(bfloat16\) or float32/, () => kern.softmax(xb, xh, false)],
        [/softmax: out has dtype bfloat16; it must be x's \(float32\)/, () => kern.softmax(z([2, 4], 'float32'), xb, false)],
        [/softmax_backward: dx has dtype float32, the input bfloat16/, () => kern.softmaxBackward(z([2, 4], 'float32'), xb, z([2, 4], 'float32'), false)],
        [/glu: up has dtype float16, gate bfloat16/, () => kern.glu('silu', xb, xh, z([2, 4], 'bfloat16'))],
        [/rope: cos must be float32, got bfloat16/, () => kern.rope(z([1, 1, 2, 4], 'bfloat16'), z([1, 2, 2], 'bfloat16'), z([1, 2, 2], 'bfloat16'),
          z([1, 1, 2, 4], 'bfloat16'), { interleaved: false, inverse: false })],
        [/binary: add needs a and b of one dtype/, () => kern.binary('add', xb, xh, z([2, 4], 'bfloat16'))],
      ];
      for (const [re, f] of cases) assert.throws(f, re);
    });
  });
});

/** Bytes the forward of f holds once it returns, and its peak above the start, on device. */
function held(device: Device, f: () => k.Tensor): { held: number; peak: number; y: k.Tensor } {
  const before = k.memory.stats(device).current.total;
  k.memory.resetPeak();
  const y = f();
  const s = k.memory.stats(device);
  return { held: s.current.total - before, peak: s.peak.total - before, y };
}

// the cpu widens into float32 scratch for the length of one kernel call: its peak is not checked
for (const device of ALL_DEVICES)
describe(`half compute keeps no float32 copies (${device})`, { skip: skipUnless(device) }, () => {
  // sizes in bytes are multiples of the allocator's granularity, so the counters are exact sums
  const [R, D] = [64, 256];
  const leaf = (shape: number[], seed: number, dtype: k.DType = 'bfloat16'): k.Tensor =>
    seededTensor(shape, dtype, device, seed, -2, 2).requiresGrad_();
  const cases: [string, (x: k.Tensor) => k.Tensor, number][] = [
    ['silu', (x) => k.unary('silu', x), 0],
    ['mul', (x) => k.mul(x, x), 0],
    ['softmax', (x) => k.softmax(x, -1), 0],
    ['rmsNorm', (x) => k.rmsNorm(x, null), 4 * R], // + rstd, float32 [R]
  ];
  for (const [name, f, extra] of cases)
    test(`${name} on bf16 holds its bf16 output and nothing else, and backward gives bf16`, () => {
      k.tidy(() => {
        const x = leaf([R, D], 3);
        const { held: h, peak, y } = held(device, () => f(x));
        assert.equal(y.dtype, 'bfloat16');
        assert.equal(h, 2 * R * D + extra, `${name}: bytes held after forward`);
        if (device === 'cuda') assert.equal(peak, 2 * R * D + extra, `${name}: peak bytes during forward`);
        y.backward(k.onesLike(y));
        assert.equal(x.grad!.dtype, 'bfloat16');
      });
    });
  test('glu and rope on bf16 hold only their outputs; rmsNorm with a float32 weight gives it a float32 gradient', () => {
    k.tidy(() => {
      const gu = leaf([R, 2 * D], 4);
      const g = held(device, () => k.glu(gu.narrow(1, 0, D), gu.narrow(1, D, D), 'silu'));
      assert.equal(g.held, 2 * R * D);
      const q = leaf([2, 16, 4, 32], 5);
      const pos = k.arange(0, 32, 1, { backend: device }).reshape([2, 16]);
      const { cos, sin } = k.rotaryTables(pos, 32, 500);
      const r = held(device, () => k.rope(q.transpose(1, 2), cos, sin));
      assert.equal(r.held, 2 * q.numel, 'rope: the contiguous copy it rotates in place');
      const x = leaf([R, D], 6);
      const w = leaf([D], 7, 'float32');
      const n = held(device, () => k.rmsNorm(x, w));
      assert.equal(n.y.dtype, 'bfloat16');
      assert.equal(n.held, 2 * R * D + 4 * R);
      n.y.backward(k.onesLike(n.y));
      assert.equal(x.grad!.dtype, 'bfloat16');
      assert.equal(w.grad!.dtype, 'float32');
    });
  });
});

const config = decoderConfig({
  model_type: 'llama', vocab_size: 40, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64,
}, 'half compute test config');
const rows = Array.from({ length: 3 }, (_, i) => Array.from({ length: 12 }, (_, t) => (i * 11 + t * 7 + 3) % 40));
const batch: k.data.Batch = { inputIds: rows, labels: rows, attentionMask: rows.map((r) => r.map(() => 1)) };

/** Loss and peak activation bytes of one forward/backward of the same model on `device`. */
function step(backend: Device | 'ref', mode: 'bf16 weights' | 'bf16 autocast'): { loss: number; activation: number } {
  k.manualSeed(5);
  const model = new k.CausalLM(config, { backend: backend === 'ref' ? 'ref' : 'cpu' });
  if (mode === 'bf16 weights') model.to('bfloat16');
  if (backend === 'cuda') model.to('cuda');
  k.memory.resetPeak();
  const { loss } = k.train.accumulateGradients(model, [batch], { autocast: mode === 'bf16 autocast' ? 'bfloat16' : null });
  const activation = k.memory.stats(backend === 'cuda' ? 'cuda' : 'cpu').peak.activation;
  model.dispose();
  return { loss, activation };
}

// the reference backend takes no half operands (halfElementwise false): the upcast path
for (const device of ALL_DEVICES)
  describe(`half compute: training step on ${device} vs the upcast path (ref)`, { skip: skipUnless(device) }, () => {
    // measured on this config: bf16 weights 195200 -> 106500 bytes, autocast 213120 -> 185472 (cuda)
    for (const [mode, ratio] of [['bf16 weights', 0.7], ['bf16 autocast', 0.95]] as const)
      test(`${mode}: same loss, under ${ratio} of the activation bytes`, () => {
        const ref = step('ref', mode);
        const got = step(device, mode);
        assertClose([got.loss], [ref.loss], { atol: 0, rtol: 1e-3, what: `${mode} loss` });
        assert.ok(got.activation < ratio * ref.activation, `${mode}: ${device} peak activation ${got.activation} bytes vs ref ${ref.activation}`);
      });
  });
