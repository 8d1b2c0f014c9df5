// The fused decode op RMSNorm + Q|K|V projection + bias + RoPE (src/ops/fused/rms_norm_qkv_rope.ts,
// native/decode_qkv.cc) against a float64 reference written here from the formulas:
//   xn = x / sqrt(mean(x²) + eps) * (offset + g),  y = xn Wᵀ + b,  q/k rotated pairwise by cos/sin
// with W the weight the kernel multiplies (float32, or a quantized weight's dequantized values).
// Odd hidden sizes (1, 7, 33, 257), GQA heads, M = 1..8 rows each at its own position, both RoPE
// layouts, biases, and every decode GEMV path forced (KESTREL_QUANT_GEMV, read per call). Tolerance
// per output: float32 rounding of the product ((K + 8) 2^-23 Σ|xn w| + 1e-6), plus, where x is
// quantized to int8 (int8/q4 weights on an integer path), int8ActivationErrorBound; a rotated
// output a c - b s carries the bounds of a and b (|c|, |s| <= 1).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { rmsNormQkvRope, rmsNormQkvRopeComposite, type QkvWeightPart } from '../../src/ops/fused/rms_norm_qkv_rope.js';
import { decodeQkvParts } from '../../src/quant/merge_qkv.js';
import { loadNative } from '../../src/backend/addon.js';
import { skipUnless } from '../devices.js';
import { seeded, withEnv } from '../helpers.js';

interface Heads { numHeads: number; numKvHeads: number; headDim: number; interleaved: boolean }
type Format = 'float32' | 'bf16' | 'int8' | 'q4';

/** The float64 reference: q|k|v rows [M, N] (RoPE applied to the q and k columns) and each output's tolerance. */
function reference(o: { x: Float32Array; g: Float32Array; eps: number; offset: number; w: Float32Array; b: Float32Array | null; cos: Float64Array; sin: Float64Array; M: number; D: number; heads: Heads; int8: boolean }) {
  const { M, D, heads: h } = o;
  const N = (h.numHeads + 2 * h.numKvHeads) * h.headDim;
  const xn = new Float64Array(M * D);
  for (let m = 0; m < M; m++) {
    let ss = 0;
    for (let j = 0; j < D; j++) ss += o.x[m * D + j] ** 2;
    const r = 1 / Math.sqrt(ss / D + o.eps);
    for (let j = 0; j < D; j++) xn[m * D + j] = o.x[m * D + j] * r * (o.offset + o.g[j]);
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
  const half = h.headDim / 2;
  for (let m = 0; m < M; m++)
    for (let head = 0; head < h.numHeads + h.numKvHeads; head++) // q heads, then k heads: contiguous columns
      for (let i = 0; i < half; i++) {
        const base = m * N + head * h.headDim;
        const [ia, ib] = h.interleaved ? [base + 2 * i, base + 2 * i + 1] : [base + i, base + half + i];
        const [c, sn] = [o.cos[m * half + i], o.sin[m * half + i]];
        const [x1, x2] = [y[ia], y[ib]];
        [y[ia], y[ib]] = [x1 * c - x2 * sn, x2 * c + x1 * sn];
        tol[ia] = tol[ib] = tol[ia] + tol[ib];
      }
  return { y, tol };
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

/** The case's operands: x [B=1, T=M, D], cos/sin [1, M, hd/2] of distinct positions, the weight in `format`. */
function operands(format: Format, D: number, M: number, h: Heads, withBias: boolean, backend: k.BackendName, seed: number) {
  const N = (h.numHeads + 2 * h.numKvHeads) * h.headDim;
  const x = Float32Array.from(seeded(M * D, seed, -2, 2));
  const g = Float32Array.from(seeded(D, seed + 1, 0.5, 1.5));
  const w32 = Float32Array.from(seeded(N * D, seed + 2, -0.5, 0.5));
  const b = withBias ? Float32Array.from(seeded(N, seed + 3, -0.3, 0.3)) : null;
  const positions = k.tensor([Array.from({ length: M }, (_, i) => 3 * i + 1)], { dtype: 'int64', backend });
  const { cos, sin } = k.rotaryTables(positions, h.headDim, 10000);
  positions.dispose();
  const wt = k.tensor(w32, { shape: [N, D], backend });
  const bias = b ? k.tensor(b, { backend }) : null;
  let part: QkvWeightPart;
  let w: Float32Array = w32;
  let ql: k.quant.QuantLinear | null = null;
  if (format === 'float32') part = { weight: wt, bias };
  else {
    ql = k.quant.QuantLinear.fromWeight(wt, bias, { type: format });
    w = k.tidy(() => ql!.dequantize().toFloat32Array());
    part = decodeQkvParts(ql, [ql])![0];
  }
  const free = () => [wt, bias, cos, sin, ql].forEach((t) => t?.dispose());
  return { x, g, w, b, cos, sin, part, N, free, wt };
}

const cpuFlags = (): string => /^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '';
/** The decode GEMV paths this CPU runs (quant_gemv_int8.cc), 'float' (float activations) included. */
const GEMV_PATHS = ['float', 'scalar', ...(/\bavx2\b/.test(cpuFlags()) ? ['avx2'] : []), ...(/\bavx_vnni\b/.test(cpuFlags()) ? ['avxvnni'] : []),
  ...(/\bavx512_vnni\b/.test(cpuFlags()) && /\bavx512bw\b/.test(cpuFlags()) ? ['avx512vnni'] : [])];
const HEADS: Heads[] = [
  { numHeads: 2, numKvHeads: 1, headDim: 4, interleaved: false },
  { numHeads: 3, numKvHeads: 3, headDim: 2, interleaved: true },
  { numHeads: 4, numKvHeads: 2, headDim: 8, interleaved: false },
];

/** Runs one case on `backend` through `op` and checks it against the float64 reference. */
function runCase(op: typeof rmsNormQkvRope, format: Format, D: number, M: number, h: Heads, withBias: boolean, backend: k.BackendName, int8: boolean, what: string): void {
  const c = operands(format, D, M, h, withBias, backend, D * 13 + M);
  const got = k.noGrad(() => k.tidy(() => {
    const x = k.tensor(c.x, { shape: [1, M, D], backend });
    const g = k.tensor(c.g, { backend });
    return rowsOf(op(x, { weight: g, eps: 1e-5, offset: 0.25 }, [c.part], c.cos, c.sin, h), M);
  }));
  const want = reference({ x: c.x, g: c.g, eps: 1e-5, offset: 0.25, w: c.w, b: c.b, cos: Float64Array.from(c.cos.toFloat32Array()), sin: Float64Array.from(c.sin.toFloat32Array()), M, D, heads: h, int8 });
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
              // which weights take int8 activations: q4 with groups tiling the rows; int8 except on the AVX2 path
              const int8 = path !== 'float' && (format === 'q4' ? D % 32 === 0 : path !== 'avx2');
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
    const c = operands('float32', D, M, h, true, 'cpu', 5);
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
    const q = operands('q4', 32, 9, h, false, 'cpu', 6);
    const want = reference({ x: q.x, g: q.g, eps: 1e-5, offset: 0, w: q.w, b: null, cos: Float64Array.from(q.cos.toFloat32Array()), sin: Float64Array.from(q.sin.toFloat32Array()), M: 9, D: 32, heads: h, int8: true });
    const got = k.noGrad(() => k.tidy(() => rowsOf(rmsNormQkvRope(k.tensor(q.x, { shape: [1, 9, 32], backend: 'cpu' }), { weight: k.tensor(q.g, { backend: 'cpu' }), eps: 1e-5, offset: 0 }, [q.part], q.cos, q.sin, h), 9)));
    q.free();
    check(got, want, 'q4 M=9 (composite)');
  });

  test('bad operands name the op and the shapes; a gradient is refused, never dropped', () => {
    const h = HEADS[0];
    const c = operands('float32', 7, 2, h, false, 'cpu', 9);
    const x = k.tensor(c.x, { shape: [1, 2, 7], backend: 'cpu' });
    const norm = { weight: null, eps: 1e-6, offset: 0 };
    assert.throws(() => rmsNormQkvRope(x, norm, [c.part], c.cos, c.sin, { ...h, numHeads: 3 }), /rmsNormQkvRope: x \[1, 2, 7\], heads H=3 Hkv=1 hd=4: the weight parts give 16 outputs, \(H \+ 2 Hkv\) hd = 20/);
    assert.throws(() => rmsNormQkvRope(x, norm, [c.part], c.cos.narrow(1, 0, 1), c.sin, h), /cos \[1, 1, 2\] \/ sin \[1, 2, 2\] must be \[B\|1, T, hd\/2\]/);
    const xg = x.clone().requiresGrad_();
    assert.throws(() => rmsNormQkvRope(xg, norm, [c.part], c.cos, c.sin, h), /decode-only \(no backward\)/);
    for (const t of [x, xg]) t.dispose();
    c.free();
  });

  test('decodeQkvParts: q4 q/k/v merged once into the attention module; the layers then view it and compute the same', () => {
    const owner = new k.nn.Module();
    const layers = [64, 32, 32].map((n, i) => k.tidy(() => k.quant.QuantLinear.fromWeight(k.randn([n, 64], { generator: new k.Generator(i) }), k.randn([n]), { type: 'q4' })));
    const x = k.randn([2, 64], { generator: new k.Generator(7) });
    const before = layers.map((l) => k.tidy(() => l.forward(x).toFloat32Array()));
    const parts = decodeQkvParts(owner, layers)!;
    assert.equal(parts.length, 1);
    const merged = parts[0].weight as { N: number; data: k.Tensor };
    assert.equal(merged.N, 128);
    for (const l of layers) assert.equal(l.qweight.storage, merged.data.storage, 'each layer views the merged codes');
    assert.deepEqual(layers.map((l) => k.tidy(() => l.forward(x).toFloat32Array())), before);
    assert.equal((decodeQkvParts(owner, layers)![0].weight as { data: k.Tensor }).data, merged.data, 'merged once, then reused');
    assert.equal(Object.keys(owner.stateDict()).length, 0, 'the merged buffers are not in the state dict');
    for (const m of [owner, ...layers]) m.dispose();
    x.dispose();
  });
});
