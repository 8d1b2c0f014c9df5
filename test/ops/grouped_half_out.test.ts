// The bf16 dataflow of a grouped MoE expert under k.autocast('bfloat16') on the cpu backend:
//   - groupedLinears(..., { halfOut: true }) writes each GEMM's float32 sums rounded once to bf16.
//     Its forward must equal the float32-output path rounded to bf16, bit for bit (the same GEMM
//     sums, rounded once as the tile is written), and with an already-bf16 x its dx must equal the
//     float32-x path's dx rounded once and its dW that path's dW bit for bit (both read the same bf16
//     operands: bf16(x) = x when x is bf16). dx is compared on one weight set: with two, autograd
//     adds the sets' bf16 dx in bf16 (two roundings), the float32 path once.
//   - native/glu.cc takes bf16/fp16 gate, up, dy and writes bf16/fp16 out, dgate, dup itself, chunk
//     by chunk: the values must equal the float32 kernel on the widened inputs, rounded once, bit
//     for bit, on odd sizes (1, 7, 33, 257 rows, and 1100 columns so runs cross the 512-element
//     chunk) and on strided halves of a fused gate_up buffer.
// Shapes have empty groups and odd widths so every GEMM tail and every vector tail runs.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { hasCpu, seededTensor } from '../helpers.js';

const offsetsOf = (counts: number[]): number[] => counts.reduce((o, c) => [...o, o[o.length - 1] + c], [0]);
/** Uneven groups over `rows` rows: groups 1 and 3 empty. */
function countsFor(rows: number): number[] {
  const c = [Math.ceil(rows / 3), 0, Math.floor(rows / 3), 0, 0];
  c[4] = rows - c[0] - c[2];
  return c;
}

/** Bit patterns of a tensor (bf16/fp16 as 16-bit words, float32 as 32-bit): equality is exact. */
const bits = (t: k.Tensor): number[] => Array.from(t.toTypedArray() as ArrayLike<number>, (v) => (Number.isNaN(v) ? -1 : v));
const assertBits = (got: k.Tensor, want: k.Tensor, what: string): void => {
  assert.equal(got.dtype, want.dtype, `${what}: dtype`);
  assert.deepEqual(bits(got), bits(want), `${what}: bit for bit`);
};

describe('groupedLinears halfOut under autocast bf16 (cpu)', { skip: hasCpu() ? false : 'cpu addon not built' }, () => {
  for (const rows of [1, 7, 33, 257])
    test(`${rows} rows over 5 groups, two empty: bf16 outputs = float32 sums rounded; bf16 x gives dx rounded, dW equal`, () => {
      k.tidy(() => {
        const offsets = offsetsOf(countsFor(rows));
        const [K, O1, O2] = [45, 37, 19];
        const xh = seededTensor([rows, K], 'float32', 'cpu', 7).to('bfloat16');
        const sets = [O1, O2].map((O, s) => [0, 1, 2, 3, 4].map((g) => seededTensor([O, K], 'float32', 'cpu', 70 + 10 * s + g)));
        // upstream gradients representable in bf16, so the bf16 path's g and the float32 path's cast of it agree
        const dys = [O1, O2].map((O, s) => seededTensor([rows, O], 'float32', 'cpu', 97 + s).to('bfloat16').to('float32'));
        const run = (x: k.Tensor, halfOut: boolean, nSets: number) => {
          const xl = x.detach().requiresGrad_();
          const ws = sets.slice(0, nSets).map((ws) => ws.map((w) => w.detach().requiresGrad_()));
          const ys = k.autocast('bfloat16', () => k.groupedLinears(xl, ws, offsets, { halfOut }));
          k.sum(k.stack(ys.map((y, s) => y.to('float32').mul(dys[s]).sum()))).backward();
          return { ys, dx: xl.grad!, dws: ws.flat().map((w) => w.grad!) };
        };
        for (const nSets of [2, 1]) {
          const half = run(xh, true, nSets); // bf16 x, bf16 outputs
          const full = run(xh.to('float32'), false, nSets); // the same operands as float32, float32 sums
          half.ys.forEach((y, s) => assertBits(y, full.ys[s].to('bfloat16'), `${nSets} sets: output ${s}`));
          half.dws.forEach((dw, i) => assertBits(dw, full.dws[i], `${nSets} sets: dW ${i} (float32)`));
          for (const i of [1, 3, 6, 8].filter((i) => i < 5 * nSets))
            assert.ok(half.dws[i].toFloat32Array().every((v) => v === 0), `empty group: dW ${i} = 0`);
          if (nSets === 1) assertBits(half.dx, full.dx.to('bfloat16'), 'dx of a bf16 x: the float32 sums rounded once');
        }
      });
    });

  test('halfOut changes nothing outside autocast (float32 operands, float32 outputs)', () => {
    k.tidy(() => {
      const x = seededTensor([9, 8], 'float32', 'cpu', 1);
      const ws = [0, 1].map((g) => seededTensor([5, 8], 'float32', 'cpu', 10 + g));
      assertBits(k.groupedLinear(x, ws, [0, 4, 9], { halfOut: true }), k.groupedLinear(x, ws, [0, 4, 9]), 'output');
    });
  });
});

describe('glu on half operands in the native kernel = float32 kernel on widened inputs, rounded once (cpu)', { skip: hasCpu() ? false : 'cpu addon not built' }, () => {
  const cases: [number, number][] = [[1, 5], [7, 33], [33, 257], [257, 7], [3, 1100]];
  for (const half of ['bfloat16', 'float16'] as const)
    for (const [rows, F] of cases)
      test(`${half} [${rows}, ${F}] (silu, gelu_tanh; contiguous and strided halves): forward and both gradients`, () => {
        k.tidy(() => {
          for (const act of ['silu', 'gelu_tanh'] as const) {
            const gu = seededTensor([rows, 2 * F], 'float32', 'cpu', rows + F, -4, 4).to(half);
            const dy = seededTensor([rows, F], 'float32', 'cpu', 5 + F).to(half);
            const views = { contiguous: (t: k.Tensor) => [t.narrow(1, 0, F).contiguous(), t.narrow(1, F, F).contiguous()], strided: (t: k.Tensor) => [t.narrow(1, 0, F), t.narrow(1, F, F)] };
            for (const [how, split] of Object.entries(views)) {
              const run = (t: k.Tensor) => {
                const leaf = t.detach().requiresGrad_();
                const [g, u] = split(leaf);
                const y = k.glu(g, u, act);
                y.backward(dy.to(y.dtype));
                return { y, d: leaf.grad! };
              };
              const got = run(gu);
              const want = run(gu.to('float32'));
              assertBits(got.y, want.y.to(half), `${act} ${how}: out`);
              assertBits(got.d, want.d.to(half), `${act} ${how}: dgate and dup`);
            }
          }
        });
      });
});
