// The fused decode ops against float64 references written here from their formulas:
//  - rmsNormQkvRope (src/ops/fused/rms_norm_qkv_rope.ts, native/decode_qkv.cc):
//      xn = x / sqrt(mean(x²) + eps) * (offset + g),  y = xn Wᵀ + b,  q/k rotated pairwise by cos/sin
//  - rmsNormGateUpGlu (rms_norm_gate_up_glu.ts, native/decode_mlp.cc): out = act(gate) * up, [gate|up] = xn Wᵀ + b
//  - linearResidual (linear_residual.ts, native/decode_residual.cc): out = x Wᵀ + b + r (no norm)
// with W the weight the kernel multiplies (float32, or a quantized weight's dequantized values).
// Odd hidden sizes (1, 7, 33, 257), GQA heads, M = 1..8 rows each at its own position, both RoPE
// layouts, biases, silu and GELU, and every decode GEMV path forced (KESTREL_QUANT_GEMV, read per
// call). Tolerance per output: float32 rounding of the product ((K + 8) 2^-23 Σ|xn w| + 1e-6), plus,
// where x is quantized to int8 (int8/q4 weights on an integer path), int8ActivationErrorBound; a
// rotated output a c - b s carries the bounds of a and b (|c|, |s| <= 1); act(g) u carries
// 1.2 |u| tol(g) + |act(g)| tol(u) (|silu'|, |gelu'| < 1.2) and 4 ulp of its own rounding.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { rmsNormQkvRope, rmsNormQkvRopeComposite } from '../../src/ops/fused/rms_norm_qkv_rope.js';
import { rmsNormGateUpGlu, rmsNormGateUpGluComposite } from '../../src/ops/fused/rms_norm_gate_up_glu.js';
import { linearResidual, linearResidualComposite } from '../../src/ops/fused/linear_residual.js';
import type { DecodePart } from '../../src/ops/fused/decode_projection.js';
import { mergedDecodeParts } from '../../src/quant/merge_projections.js';
import { loadNative } from '../../src/backend/addon.js';
import { skipUnless } from '../devices.js';
import { seeded, withEnv } from '../helpers.js';

interface Heads { numHeads: number; numKvHeads: number; headDim: number; interleaved: boolean }
type Format = 'float32' | 'bf16' | 'int8' | 'q4';

interface RefInput { x: Float32Array; g: Float32Array | null; eps: number; offset: number; w: Float32Array; b: Float32Array | null; M: number; D: number; N: number; int8: boolean }

/** The float64 projection y [M, N] = RMSNorm(x) Wᵀ + b and each output's tolerance. */
function projectionRef(o: RefInput): { y: Float64Array; tol: Float64Array } {
  const { M, D, N } = o;
  const xn = new Float64Array(M * D);
  for (let m = 0; m < M; m++) {
    let ss = 0;
    for (let j = 0; j < D; j++) ss += o.x[m * D + j] ** 2;
    const r = o.g ? 1 / Math.sqrt(ss / D + o.eps) : 1; // g null: no norm (linearResidual)
    for (let j = 0; j < D; j++) xn[m * D + j] = o.x[m * D + j] * r * (o.g ? o.offset + o.g[j] : 1);
  }
  const y = new Float64Array(M * N), tol = new Float64Array(M * N);
  const bound = o.int8 ? k.quant.int8ActivationErrorBound(xn, o.w, [M, N, D]) : null;
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let [s, a] = [o.b ? o.b[n] : 0, 0];
      for (let j = 0; j < D; j++) [s, a] = [s + xn[m * D + j] * o.w[n * D + j], a + Math.abs(xn[m * D + j] * o.w[n * D + j])];
      y[m * N + n] = s;
      tol[m * N + n] = (D + 8) * 2 ** -23 * (a + Math.abs(s)) + 1e-6 + (bound ? bound[m * N + n] : 0);
    }
  return { y, tol };
}

/** The q|k|v reference: RoPE applied in place to the q and k columns of the projection's rows. */
function qkvRef(o: RefInput, cos: Float64Array, sin: Float64Array, h: Heads) {
  const { y, tol } = projectionRef(o);
  const half = h.headDim / 2;
  for (let m = 0; m < o.M; m++)
    for (let head = 0; head < h.numHeads + h.numKvHeads; head++) // q heads, then k heads: contiguous columns
      for (let i = 0; i < half; i++) {
        const base = m * o.N + head * h.headDim;
        const [ia, ib] = h.interleaved ? [base + 2 * i, base + 2 * i + 1] : [base + i, base + half + i];
        const [c, sn] = [cos[m * half + i], sin[m * half + i]];
        const [x1, x2] = [y[ia], y[ib]];
        [y[ia], y[ib]] = [x1 * c - x2 * sn, x2 * c + x1 * sn];
        tol[ia] = tol[ib] = tol[ia] + tol[ib];
      }
  return { y, tol };
}

const ACTS = {
  silu: (v: number) => v / (1 + Math.exp(-v)),
  gelu_tanh: (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))),
} as const;

/** The gated MLP reference: act(gate) * up over the projection's halves [M, F]. */
function gluRef(o: RefInput, act: keyof typeof ACTS) {
  const { y, tol } = projectionRef(o);
  const F = o.N / 2;
  const out = new Float64Array(o.M * F), outTol = new Float64Array(o.M * F);
  for (let m = 0; m < o.M; m++)
    for (let f = 0; f < F; f++) {
      const [ig, iu] = [m * o.N + f, m * o.N + F + f];
      const a = ACTS[act](y[ig]);
      out[m * F + f] = a * y[iu];
      outTol[m * F + f] = 1.2 * Math.abs(y[iu]) * tol[ig] + Math.abs(a) * tol[iu] + 4 * 2 ** -24 * Math.abs(out[m * F + f]) + 1e-7;
    }
  return { y: out, tol: outTol };
}

/** q [B,H,T,hd], k, v [B,Hkv,T,hd] back to rows [M = B T, N] (the reference's layout). */
function rowsOf(out: { q: k.Tensor; k: k.Tensor; v: k.Tensor }, M: number): Float32Array {
  return k.tidy(() => k.cat([out.q, out.k, out.v].map((t) => t.transpose(1, 2).reshape([M, -1])), 1).toFloat32Array());
}

function check(got: Float32Array, want: { y: Float64Array; tol: Float64Array }, what: string): void {
  for (let i = 0; i < got.length; i++) {
    const err = Math.abs(got[i] - want.y[i]);
    assert.ok(err <= want.tol[i], `${what} [${i}]: got ${got[i]}, want ${want.y[i]} (error ${err.toExponential(2)} > ${want.tol[i].toExponential(2)})`);
  }
}

/** The case's operands: x [B=1, T=M, D], cos/sin [1, M, hd/2] of distinct positions, the weight [N, D] in `format`. */
function operands(format: Format, D: number, M: number, N: number, hd: number, withBias: boolean, backend: k.BackendName, seed: number) {
  const x = Float32Array.from(seeded(M * D, seed, -2, 2));
  const g = Float32Array.from(seeded(D, seed + 1, 0.5, 1.5));
  const w32 = Float32Array.from(seeded(N * D, seed + 2, -0.5, 0.5));
  const b = withBias ? Float32Array.from(seeded(N, seed + 3, -0.3, 0.3)) : null;
  const positions = k.tensor([Array.from({ length: M }, (_, i) => 3 * i + 1)], { dtype: 'int64', backend });
  const { cos, sin } = k.rotaryTables(positions, hd, 10000);
  positions.dispose();
  const wt = k.tensor(w32, { shape: [N, D], backend });
  const bias = b ? k.tensor(b, { backend }) : null;
  let part: DecodePart;
  let w: Float32Array = w32;
  let ql: k.quant.QuantLinear | null = null;
  if (format === 'float32') part = { weight: wt, bias };
  else {
    ql = k.quant.QuantLinear.fromWeight(wt, bias, { type: format });
    w = k.tidy(() => ql!.dequantize().toFloat32Array());
    part = mergedDecodeParts(ql, 'qkv', [ql])![0];
  }
  const free = () => [wt, bias, cos, sin, ql].forEach((t) => t?.dispose());
  const ref = (int8: boolean): RefInput => ({ x, g, eps: 1e-5, offset: 0.25, w, b, M, D, N, int8 });
  const tables = () => [Float64Array.from(cos.toFloat32Array()), Float64Array.from(sin.toFloat32Array())] as const;
  return { x, g, w, b, cos, sin, part, N, free, wt, ref, tables };
}

const qkvWidth = (h: Heads): number => (h.numHeads + 2 * h.numKvHeads) * h.headDim;

const cpuFlags = (): string => /^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '';
/** The decode GEMV paths this CPU runs (quant_gemv_int8.cc), 'float' (float activations) included. */
const GEMV_PATHS = ['float', 'scalar', ...(/\bavx2\b/.test(cpuFlags()) ? ['avx2'] : []), ...(/\bavx_vnni\b/.test(cpuFlags()) ? ['avxvnni'] : []),
  ...(/\bavx512_vnni\b/.test(cpuFlags()) && /\bavx512bw\b/.test(cpuFlags()) ? ['avx512vnni'] : [])];
const HEADS: Heads[] = [
  { numHeads: 2, numKvHeads: 1, headDim: 4, interleaved: false },
  { numHeads: 3, numKvHeads: 3, headDim: 2, interleaved: true },
  { numHeads: 4, numKvHeads: 2, headDim: 8, interleaved: false },
];

/** Runs one q|k|v case on `backend` through `op` and checks it against the float64 reference. */
function runCase(op: typeof rmsNormQkvRope, format: Format, D: number, M: number, h: Heads, withBias: boolean, backend: k.BackendName, int8: boolean, what: string): void {
  const c = operands(format, D, M, qkvWidth(h), h.headDim, withBias, backend, D * 13 + M);
  const got = k.noGrad(() => k.tidy(() => {
    const x = k.tensor(c.x, { shape: [1, M, D], backend });
    const g = k.tensor(c.g, { backend });
    return rowsOf(op(x, { weight: g, eps: 1e-5, offset: 0.25 }, [c.part], c.cos, c.sin, h), M);
  }));
  const want = qkvRef(c.ref(int8), ...c.tables(), h);
  c.free();
  check(got, want, what);
}

/** Runs one gate|up case (F outputs of each) through `op` and checks it against the float64 reference. */
function runGluCase(op: typeof rmsNormGateUpGlu, format: Format, D: number, M: number, F: number, act: keyof typeof ACTS, backend: k.BackendName, int8: boolean, what: string): void {
  const c = operands(format, D, M, 2 * F, 2, true, backend, D * 17 + M + F);
  const got = k.noGrad(() => k.tidy(() => {
    const x = k.tensor(c.x, { shape: [1, M, D], backend });
    return op(x, { weight: k.tensor(c.g, { backend }), eps: 1e-5, offset: 0.25 }, [c.part], act).toFloat32Array();
  }));
  const want = gluRef(c.ref(int8), act);
  c.free();
  check(got, want, what);
}

describe('rmsNormQkvRope: fused RMSNorm + Q|K|V + bias + RoPE (decode)', { skip: skipUnless('cpu') }, () => {
  test('float32 and bf16 weights: hidden 1, 7, 33, 257; GQA; M = 1..8; both RoPE layouts; = float64 reference', () => {
    assert.ok(k.getBackend('cpu').decode, 'the cpu backend has the fused decode kernels');
    for (const format of ['float32', 'bf16'] as const)
      for (const D of [1, 7, 33, 257])
        for (const [i, h] of HEADS.entries())
          for (const M of D === 33 ? [1, 2, 3, 4, 5, 6, 7, 8] : [1, 3, 8])
            runCase(rmsNormQkvRope, format, D, M, h, i !== 1, 'cpu', false, `${format} D=${D} M=${M} heads=${JSON.stringify(h)}`);
  });

  test(`int8 and q4 weights, every decode GEMV path (${GEMV_PATHS.join(', ')}): = float64 reference within float32 rounding + the int8 activation bound`, () => {
    assert.match(loadNative()!.info().quantGemv, /float|scalar|avx2|avxvnni|avx512vnni/);
    for (const path of GEMV_PATHS)
      withEnv('KESTREL_QUANT_GEMV', path, () => {
        for (const format of ['int8', 'q4'] as const)
          for (const D of format === 'q4' ? [32, 33, 64, 257] : [1, 7, 33, 257])
            for (const M of [1, 4, 8]) {
              const h = HEADS[(D + M) % HEADS.length];
              // which weights take int8 activations: q4 with groups tiling the rows; every int8
              const int8 = path !== 'float' && (format === 'q4' ? D % 32 === 0 : true);
              runCase(rmsNormQkvRope, format, D, M, h, true, 'cpu', int8, `${path} ${format} D=${D} M=${M}`);
            }
      });
  });

  test('the composite (ref backend, float64 kernels) = the same reference; the fused op there falls back to it', () => {
    for (const D of [7, 33])
      for (const h of HEADS) {
        runCase(rmsNormQkvRopeComposite, 'float32', D, 3, h, true, 'ref', false, `composite D=${D}`);
        runCase(rmsNormQkvRope, 'q4', 32, 2, h, true, 'ref', false, `ref fallback q4 D=${D}`);
      }
  });

  test('q, k, v split as three float parts = one merged part; more than 8 rows with a quantized part takes the composite', () => {
    const h = HEADS[2];
    const [D, M] = [33, 3];
    const c = operands('float32', D, M, qkvWidth(h), h.headDim, true, 'cpu', 5);
    const x = k.tensor(c.x, { shape: [1, M, D], backend: 'cpu' });
    const norm = { weight: null, eps: 1e-6, offset: 0 };
    const sizes = [h.numHeads * h.headDim, h.numKvHeads * h.headDim, h.numKvHeads * h.headDim];
    const b = (c.part as { bias: k.Tensor }).bias;
    const [one, three] = k.noGrad(() => k.tidy(() => {
      let start = 0;
      const parts = sizes.map((n) => ({ weight: c.wt.narrow(0, (start += n) - n, n), bias: b.narrow(0, start - n, n) }));
      return [rowsOf(rmsNormQkvRope(x, norm, [c.part], c.cos, c.sin, h), M), rowsOf(rmsNormQkvRope(x, norm, parts, c.cos, c.sin, h), M)];
    }));
    assert.deepEqual(three, one, 'the same products, column blocks apart');
    x.dispose();
    c.free();
    const q = operands('q4', 32, 9, qkvWidth(h), h.headDim, false, 'cpu', 6);
    const want = qkvRef(q.ref(true), ...q.tables(), h);
    const got = k.noGrad(() => k.tidy(() => rowsOf(rmsNormQkvRope(k.tensor(q.x, { shape: [1, 9, 32], backend: 'cpu' }), { weight: k.tensor(q.g, { backend: 'cpu' }), eps: 1e-5, offset: 0.25 }, [q.part], q.cos, q.sin, h), 9)));
    q.free();
    check(got, want, 'q4 M=9 (composite)');
  });

  test('bad operands name the op and the shapes; a gradient is refused, never dropped', () => {
    const h = HEADS[0];
    const c = operands('float32', 7, 2, qkvWidth(h), h.headDim, false, 'cpu', 9);
    const x = k.tensor(c.x, { shape: [1, 2, 7], backend: 'cpu' });
    const norm = { weight: null, eps: 1e-6, offset: 0 };
    assert.throws(() => rmsNormQkvRope(x, norm, [c.part], c.cos, c.sin, { ...h, numHeads: 3 }), /rmsNormQkvRope: x \[1, 2, 7\], heads H=3 Hkv=1 hd=4: the weight parts give 16 outputs, \(H \+ 2 Hkv\) hd = 20/);
    assert.throws(() => rmsNormQkvRope(x, norm, [c.part], c.cos.narrow(1, 0, 1), c.sin, h), /cos \[1, 1, 2\] \/ sin \[1, 2, 2\] must be \[B\|1, T, hd\/2\]/);
    const xg = x.clone().requiresGrad_();
    assert.throws(() => rmsNormQkvRope(xg, norm, [c.part], c.cos, c.sin, h), /decode-only \(no backward\)/);
    for (const t of [x, xg]) t.dispose();
    c.free();
  });

  test('mergedDecodeParts: q4 q/k/v merged once into the attention module; the layers then view it and compute the same', () => {
    const owner = new k.nn.Module();
    const layers = [64, 32, 32].map((n, i) => k.tidy(() => k.quant.QuantLinear.fromWeight(k.randn([n, 64], { generator: new k.Generator(i) }), k.randn([n]), { type: 'q4' })));
    const x = k.randn([2, 64], { generator: new k.Generator(7) });
    const before = layers.map((l) => k.tidy(() => l.forward(x).toFloat32Array()));
    const parts = mergedDecodeParts(owner, 'qkv', layers)!;
    assert.equal(parts.length, 1);
    const merged = parts[0].weight as { N: number; data: k.Tensor };
    assert.equal(merged.N, 128);
    for (const l of layers) assert.equal(l.qweight.storage, merged.data.storage, 'each layer views the merged codes');
    assert.deepEqual(layers.map((l) => k.tidy(() => l.forward(x).toFloat32Array())), before);
    assert.equal((mergedDecodeParts(owner, 'qkv', layers)![0].weight as { data: k.Tensor }).data, merged.data, 'merged once, then reused');
    assert.equal(Object.keys(owner.stateDict()).length, 0, 'the merged buffers are not in the state dict');
    for (const m of [owner, ...layers]) m.dispose();
    x.dispose();
  });
});

describe('rmsNormGateUpGlu: fused RMSNorm + gate|up + act(gate) * up (decode)', { skip: skipUnless('cpu') }, () => {
  test('float32 and bf16 weights: hidden 1, 7, 33, 257; F = 1, 7, 33; M = 1..8; silu and gelu_tanh; = float64 reference', () => {
    for (const format of ['float32', 'bf16'] as const)
      for (const D of [1, 7, 33, 257])
        for (const F of [1, 7, 33])
          for (const M of D === 33 && F === 7 ? [1, 2, 3, 4, 5, 6, 7, 8] : [1, 8])
            runGluCase(rmsNormGateUpGlu, format, D, M, F, (D + F) % 2 ? 'silu' : 'gelu_tanh', 'cpu', false, `${format} D=${D} F=${F} M=${M}`);
  });

  test(`int8 and q4 weights, every decode GEMV path (${GEMV_PATHS.join(', ')}): = float64 reference within the stated bounds`, () => {
    for (const path of GEMV_PATHS)
      withEnv('KESTREL_QUANT_GEMV', path, () => {
        for (const format of ['int8', 'q4'] as const)
          for (const D of format === 'q4' ? [32, 33, 64] : [1, 7, 33, 257])
            for (const M of [1, 5, 8]) {
              const int8 = path !== 'float' && (format === 'q4' ? D % 32 === 0 : true);
              runGluCase(rmsNormGateUpGlu, format, D, M, 48, 'silu', 'cpu', int8, `${path} ${format} D=${D} M=${M}`);
            }
      });
  });

  test('the composite (ref backend) = the same reference, with gate and up apart or merged; odd part counts are refused', () => {
    runGluCase(rmsNormGateUpGluComposite, 'float32', 33, 3, 7, 'silu', 'ref', false, 'composite silu');
    runGluCase(rmsNormGateUpGlu, 'float32', 7, 2, 33, 'gelu_tanh', 'ref', false, 'ref fallback gelu_tanh');
    const c = operands('float32', 33, 2, 14, 2, false, 'cpu', 3);
    const x = k.tensor(c.x, { shape: [1, 2, 33], backend: 'cpu' });
    const norm = { weight: null, eps: 1e-6, offset: 0 };
    const [merged, apart] = k.noGrad(() => k.tidy(() => [
      rmsNormGateUpGlu(x, norm, [c.part], 'silu').toFloat32Array(),
      rmsNormGateUpGlu(x, norm, [{ weight: c.wt.narrow(0, 0, 7), bias: null }, { weight: c.wt.narrow(0, 7, 7), bias: null }], 'silu').toFloat32Array(),
    ]));
    assert.deepEqual(apart, merged, 'the same products, column blocks apart');
    assert.throws(() => k.noGrad(() => rmsNormGateUpGlu(x, norm, [{ weight: c.wt.narrow(0, 0, 5), bias: null }, { weight: c.wt.narrow(0, 5, 9), bias: null }], 'silu')),
      /rmsNormGateUpGlu: x \[1, 2, 33\]: the parts must be one merged \[2F, D\] gate\|up weight or gate and up \[F, D\] each \(got 14 outputs in 2 parts\)/);
    x.dispose();
    c.free();
  });
});

describe('linearResidual: fused output projection + residual (decode)', { skip: skipUnless('cpu') }, () => {
  /** One case: x [1, M, D] Wᵀ + b + r against x Wᵀ + b + r in float64 (r adds its own rounding: 2^-24 |out|). */
  function runResidualCase(op: typeof linearResidual, format: Format, D: number, M: number, N: number, backend: k.BackendName, int8: boolean, what: string): void {
    const c = operands(format, D, M, N, 2, true, backend, D * 19 + M + N);
    const r = Float32Array.from(seeded(M * N, D + N, -3, 3));
    const got = k.noGrad(() => k.tidy(() => op(k.tensor(c.x, { shape: [1, M, D], backend }), [c.part], k.tensor(r, { shape: [1, M, N], backend })).toFloat32Array()));
    const want = projectionRef({ ...c.ref(int8), g: null });
    want.y.forEach((v, i) => {
      want.y[i] = v + r[i];
      want.tol[i] += 2 ** -24 * Math.abs(want.y[i]);
    });
    c.free();
    check(got, want, what);
  }

  test(`float32, bf16, int8 and q4 weights; hidden 1, 7, 33, 257; M = 1..8; every decode GEMV path (${GEMV_PATHS.join(', ')})`, () => {
    for (const format of ['float32', 'bf16'] as const)
      for (const D of [1, 7, 33, 257])
        for (const M of D === 33 ? [1, 2, 3, 4, 5, 6, 7, 8] : [1, 8]) runResidualCase(linearResidual, format, D, M, 33, 'cpu', false, `${format} D=${D} M=${M}`);
    for (const path of GEMV_PATHS)
      withEnv('KESTREL_QUANT_GEMV', path, () => {
        for (const format of ['int8', 'q4'] as const)
          for (const D of format === 'q4' ? [32, 33, 64] : [1, 7, 33, 257])
            for (const M of [1, 8]) {
              const int8 = path !== 'float' && (format === 'q4' ? D % 32 === 0 : true);
              runResidualCase(linearResidual, format, D, M, 7, 'cpu', int8, `${path} ${format} D=${D} M=${M}`);
            }
      });
  });

  test('the composite (ref backend) = the same reference; a residual of the wrong shape is refused', () => {
    runResidualCase(linearResidualComposite, 'float32', 33, 3, 7, 'ref', false, 'composite');
    runResidualCase(linearResidual, 'q4', 32, 2, 7, 'ref', false, 'ref fallback q4');
    const c = operands('float32', 7, 2, 5, 2, false, 'cpu', 1);
    const x = k.tensor(c.x, { shape: [1, 2, 7], backend: 'cpu' });
    const r = k.zeros([1, 2, 4], { backend: 'cpu' });
    assert.throws(() => k.noGrad(() => linearResidual(x, [c.part], r)), /linearResidual: x \[1, 2, 7\], residual \[1, 2, 4\]: one weight part of \[N, K\] with a residual \[B, T, N\] \(got 1 parts giving N=5\)/);
    for (const t of [x, r]) t.dispose();
    c.free();
  });
});

describe('fused decode kernels: bad arguments at the native boundary', { skip: skipUnless('cpu') }, () => {
  test('a 1-d float weight part and unequal gate/up parts are refused, named, before any read', () => {
    const dec = k.getBackend('cpu').decode!;
    const f = (shape: number[]): k.Tensor => k.zeros(shape, { backend: 'cpu' });
    const [x, out] = [f([1, 4]), f([1, 3])];
    // [4] would otherwise pass as N = -1 rows
    assert.throws(() => dec.rmsNormGateUpGlu(x, null, 1e-6, 0, [{ weight: f([4]), bias: null }], 'silu', out), /rms_norm_gate_up_glu: weight part \[4\] must be 2-d \[out, in\]/);
    assert.throws(() => dec.linearResidual(x, [{ weight: f([4]), bias: null }], f([1, 4]), f([1, 4])), /linear_residual: weight part \[4\] must be 2-d/);
    // 2 + 4 rows are even in all, but gate and up would be split at the wrong row
    assert.throws(() => dec.rmsNormGateUpGlu(x, null, 1e-6, 0, [{ weight: f([2, 4]), bias: null }, { weight: f([4, 4]), bias: null }], 'silu', out), /two parts of equal rows, got 2 parts/);
  });
});
