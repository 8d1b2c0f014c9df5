// groupedLinear under k.autocast('bfloat16') on the cpu backend: every expert's product goes to
// matmul_list with bfloat16 operands (native/gemm_list.cc -> hgemm_on: AMX tiles, AVX-512 BF16 or
// the converting path, float32 sums), forward, dx and every dW, on 1, 7, 33 and 257 rows with empty
// groups, each GEMM path forced in turn (KESTREL_BF16_GEMM, read per call).
//
// Under autocast the grouped op feeds the GEMMs bfloat16 copies of x, W and dy and keeps their
// float32 sums as y, dx and dW (no rounding of the results). The reference is float64 on the same
// bfloat16-rounded operands: products of two bfloat16 values are exact in float32, so the only
// error left is the float32 sum's (4·(sqrt(K)+1)·2^-24·Σ|a b| < 1e-4 at these sizes), far below
// what unrounded operands would change (2^-9 relative per operand, about 1e-2 here).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { loadNative } from '../../src/backend/addon.js';
import { assertClose, hasCpu, like, seededTensor, withEnv } from '../helpers.js';

const offsetsOf = (counts: number[]): number[] => counts.reduce((o, c) => [...o, o[o.length - 1] + c], [0]);
/** float64 values rounded to bfloat16 (nearest even) and back, on the reference backend */
const bf16Round = (t: k.Tensor): k.Tensor => k.noGrad(() => t.to('bfloat16').to('float64'));
/** the float32 sums' error */
const TOL = { rtol: 1e-4, atol: 1e-4 };

const info = hasCpu() ? loadNative()?.info() : undefined;
const PATHS = [
  { path: 'amx', lacks: info && !info.amxBf16 ? 'this CPU lacks AMX-BF16' : false },
  { path: 'avx512bf16', lacks: info && !info.avx512bf16 ? 'this CPU lacks AVX-512 BF16' : false },
  { path: 'convert', lacks: false },
] as const;

/** Uneven groups over `rows` rows: groups 1 and 3 empty, group 4 the remainder. */
function countsFor(rows: number): number[] {
  const c = [Math.ceil(rows / 3), 0, Math.floor(rows / 3), 0, 0];
  c[4] = rows - c[0] - c[2];
  return c;
}

function checkRows(rows: number): void {
  k.tidy(() => {
    const offsets = offsetsOf(countsFor(rows));
    const [K, O] = [45, 37]; // no multiple of 2, 16 or 32: every path's k and column tails
    const x64 = seededTensor([rows, K], 'float64', 'ref', 7);
    const w64 = [0, 1, 2, 3, 4].map((g) => seededTensor([O, K], 'float64', 'ref', 70 + g));
    const dy64 = seededTensor([rows, O], 'float64', 'ref', 97);
    // the reference: float64 products of the rounded operands
    const [xr, dyr] = [bf16Round(x64), bf16Round(dy64)];
    const wr = w64.map(bf16Round);
    const want = {
      y: k.groupedLinearComposite(xr, wr, offsets),
      dx: k.cat(wr.map((w, g) => k.narrow(dyr, 0, offsets[g], offsets[g + 1] - offsets[g]).matmul(w)), 0),
      dw: wr.map((_, g) => {
        const [o, n] = [offsets[g], offsets[g + 1] - offsets[g]];
        return k.narrow(dyr, 0, o, n).t().matmul(k.narrow(xr, 0, o, n));
      }),
    };
    // the cpu: float32 leaves, the grouped op under autocast
    const x = like(x64, 'cpu', 'float32').requiresGrad_();
    const ws = w64.map((w) => like(w, 'cpu', 'float32').requiresGrad_());
    const y = k.autocast('bfloat16', () => k.groupedLinear(x, ws, offsets));
    assert.equal(y.dtype, 'float32', 'the float32 sums are the output');
    y.mul(like(dyr, 'cpu', 'float32')).sum().backward();
    assertClose(y.to('float64'), want.y, { ...TOL, what: `${rows} rows: forward` });
    assert.equal(x.grad!.dtype, 'float32', 'the gradient comes back in the leaf dtype');
    assertClose(x.grad!.to('float64'), want.dx, { ...TOL, what: `${rows} rows: dx` });
    ws.forEach((w, g) => assertClose(w.grad!.to('float64'), want.dw[g], { ...TOL, what: `${rows} rows: dW${g}` }));
    for (const g of [1, 3]) assert.ok(ws[g].grad!.toFloat32Array().every((v) => v === 0), `empty group ${g}: dW = 0`);
  });
}

describe('groupedLinear under autocast bf16 (matmul_list over the half GEMM) vs float64 on the rounded operands', { skip: hasCpu() ? false : 'cpu addon not built' }, () => {
  for (const { path, lacks } of PATHS)
    for (const rows of [1, 7, 33, 257])
      test(`KESTREL_BF16_GEMM=${path}: ${rows} rows over 5 groups, two empty: forward, dx, dW`, { skip: lacks }, () => {
        withEnv('KESTREL_BF16_GEMM', path, () => checkRows(rows));
      });

  test('forward and backward under autocast free every bf16 copy and temporary (live storage back to its baseline)', () => {
    const x = seededTensor([40, 24], 'float32', 'cpu', 3).requiresGrad_();
    const ws = [0, 1, 2].map((g) => seededTensor([17, 24], 'float32', 'cpu', 30 + g).requiresGrad_());
    const base = k.memory.stats().current.total;
    // outside any scope: the op itself must free its bf16 copies (or hand them to the tape, which
    // frees them after backward)
    const [a, b] = k.autocast('bfloat16', () => k.groupedLinears(x, [ws, ws], [0, 13, 13, 40]));
    k.tidy(() => k.add(a, b).t().mul(seededTensor([17, 40], 'float32', 'cpu', 9)).sum().backward());
    a.dispose();
    b.dispose();
    const grads = [x, ...ws].map((t) => t.grad!.numel * 4).reduce((p, q) => p + q, 0);
    assert.equal(k.memory.stats().current.total - base, grads, 'only the float32 gradients stay');
    for (const t of [x, ...ws]) t.dispose();
  });

  test('matmul_list takes float32 and bfloat16 products in one list, into float32 or bfloat16 outs, accumulating', () => {
    k.tidy(() => {
      const cpu = k.getBackend('cpu');
      const a = seededTensor([33, 19], 'bfloat16', 'cpu', 1);
      const b = seededTensor([19, 7], 'bfloat16', 'cpu', 2);
      const a32 = a.to('float32');
      const b32 = b.to('float32');
      // bfloat16 a, b: products exact in float32, so the float32 out equals the float32 GEMM to its sum's error
      const want = a32.matmul(b32);
      const outs = { f32: k.ones([33, 7], { backend: 'cpu' }), bf16: k.ones([33, 7], { dtype: 'bfloat16', backend: 'cpu' }), plain: k.ones([33, 7], { backend: 'cpu' }) };
      cpu.kernels.matmulList!([{ a, b, out: outs.f32 }, { a, b, out: outs.bf16 }, { a: a32, b: b32, out: outs.plain }], true);
      const plus1 = want.add(1);
      assertClose(outs.f32, plus1, { atol: 1e-5, rtol: 1e-5, what: 'bf16 operands, float32 out, accumulated' });
      assertClose(outs.plain, plus1, { atol: 1e-5, rtol: 1e-5, what: 'float32 product in the same list' });
      assertClose(outs.bf16.to('float32'), plus1.to('bfloat16').to('float32'), { atol: 1e-6, rtol: 2 ** -7, what: 'bf16 out: the float32 sum rounded once' });
    });
  });

  for (const { path, lacks } of PATHS)
    test(`matmul_list with a float32 b and a bfloat16 a (${path}): bit for bit the product of b cast first, plain and transposed b`, { skip: lacks }, () => {
      withEnv('KESTREL_BF16_GEMM', path, () => k.tidy(() => {
        const cpu = k.getBackend('cpu');
        for (const [M, K, N] of [[1, 19, 7], [33, 45, 37], [257, 64, 33]]) {
          const a = seededTensor([M, K], 'bfloat16', 'cpu', M);
          const b32 = seededTensor([K, N], 'float32', 'cpu', K); // not bf16 values: the rounding is the kernel's
          const bt32 = seededTensor([N, K], 'float32', 'cpu', N).t(); // a weight [O, K] read as [K, O]
          const [got, want, gotT, wantT] = [0, 1, 2, 3].map(() => k.zeros([M, N], { backend: 'cpu' }));
          cpu.kernels.matmulList!([{ a, b: b32, out: got }, { a, b: bt32, out: gotT }], false);
          cpu.kernels.matmulList!([{ a, b: b32.to('bfloat16'), out: want }, { a, b: bt32.to('bfloat16'), out: wantT }], false);
          assert.deepEqual(got.toFloat32Array(), want.toFloat32Array(), `[${M}, ${K}, ${N}]`);
          assert.deepEqual(gotT.toFloat32Array(), wantT.toFloat32Array(), `[${M}, ${K}, ${N}] transposed b`);
        }
      }));
    });

  test('matmul_list names bad dtypes and a bad KESTREL_BF16_GEMM before it writes', () => {
    k.tidy(() => {
      const cpu = k.getBackend('cpu');
      const a = k.zeros([2, 3], { dtype: 'bfloat16', backend: 'cpu' });
      const b = k.zeros([3, 4], { dtype: 'bfloat16', backend: 'cpu' });
      const out = k.full([2, 4], 5, { backend: 'cpu' });
      assert.throws(() => cpu.kernels.matmulList!([{ a, b, out }, { a, b: b.to('float16'), out }], false),
        /product 1: need float32 a, b, out or a bfloat16\/float16 a with b of its dtype or float32 .* got bfloat16, float16, float32/);
      assert.throws(() => cpu.kernels.matmulList!([{ a: a.to('float32'), b, out }], false), /product 0: .* got float32, bfloat16, float32/);
      withEnv('KESTREL_BF16_GEMM', 'fast', () =>
        assert.throws(() => cpu.kernels.matmulList!([{ a, b, out }], false), /matmul_list: KESTREL_BF16_GEMM=fast: expected amx, avx512bf16, convert/));
      assert.ok(out.toFloat32Array().every((v) => v === 5), 'nothing was written');
    });
  });
});
