// linearRecast (src/ops/fused/recast_linear.ts): under bf16/fp16 autocast, linear(x, W) with a float32
// weight equals linearComposite (the cast-then-matmul path it replaces) bit for bit in y and dx, and
// its dW is the float32 sum gᵀ x of the half-rounded operands (the composite rounds it to half: equal
// within that rounding); it gives a contiguous dW, holds exactly W's half copy (numel x 2 bytes) fewer
// between forward and backward, and its gradients agree with the float64 formulas dx = g W (half
// tolerance) and dW = gᵀ x (float32 tolerance) on the half-rounded operands.
// Odd shapes (1, 7, 33, 257) break the GEMM's vector tails.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { linearComposite } from '../../src/ops/matmul.js';
import { assertClose, seededTensor } from '../helpers.js';

type Half = 'bfloat16' | 'float16';
const CASES: { x: number[]; out: number }[] = [
  { x: [1, 7, 33], out: 257 },
  { x: [2, 33, 7], out: 1 },
  { x: [257, 1], out: 7 },
];

/** y, dx, dW (as raw bits) and the bytes held between forward and backward, for one linear implementation. */
function run(f: (x: k.Tensor, w: k.Tensor) => k.Tensor, xShape: number[], out: number, ac: Half) {
  const x = seededTensor(xShape, 'float32', 'cpu', 1).requiresGrad_();
  const w = seededTensor([out, xShape.at(-1)!], 'float32', 'cpu', 2).requiresGrad_();
  const r = seededTensor([...xShape.slice(0, -1), out], ac, 'cpu', 3);
  const before = k.memory.stats().current.total;
  const y = k.autocast(ac, () => f(x, w));
  const held = k.memory.stats().current.total - before;
  k.autocast(ac, () => k.tidy(() => y.mul(r).sum().backward()));
  const bits = (t: k.Tensor): number[] => Array.from(t.toTypedArray() as ArrayLike<number>, Number);
  const res = { y: bits(y), dx: bits(x.grad!), dw: bits(w.grad!), held, yDtype: y.dtype, x, w, r };
  y.dispose();
  return res;
}

describe('linearRecast (cpu)', { skip: !k.hasBackend('cpu') && 'the native backend is not built' }, () => {
  for (const ac of ['bfloat16', 'float16'] as const)
    for (const c of CASES) {
      const name = `${ac} x [${c.x}] W [${c.out}, ${c.x.at(-1)}]`;
      test(`${name}: equals the composite bit for bit and holds no half weight`, () => {
        const fused = run((x, w) => k.linear(x, w), c.x, c.out, ac);
        const composite = run((x, w) => linearComposite(x, w), c.x, c.out, ac);
        assert.equal(fused.yDtype, ac);
        assert.deepEqual(fused.y, composite.y, 'y');
        assert.deepEqual(fused.dx, composite.dx, 'dx');
        // the composite's dW is the same sums rounded to half
        assertClose(fused.w.grad!, composite.w.grad!, { atol: 1e-3, rtol: ac === 'bfloat16' ? 2 ** -8 : 2 ** -11, what: 'dW' });
        // in W's own layout, so the optimizer reads it without a transposing copy
        assert.ok(fused.w.grad!.isContiguous(), 'dW contiguous');
        // the composite also holds half(Wᵀ) [in, out] from forward to backward
        assert.equal(composite.held - fused.held, c.out * c.x.at(-1)! * 2);
        for (const t of [fused, composite].flatMap((r) => [r.x, r.w, r.r])) t.dispose();
      });
    }

  test('a pass that records nothing (no grad) multiplies by the float32 W itself: the composite\'s bits, no half copy of W', () => {
    for (const c of CASES) {
      const [K, N] = [c.x.at(-1)!, c.out];
      const x = seededTensor(c.x, 'float32', 'cpu', 1);
      const w = seededTensor([N, K], 'float32', 'cpu', 2).requiresGrad_();
      const [fused, composite] = k.noGrad(() => k.autocast('bfloat16', () => {
        k.memory.resetPeak();
        const before = k.memory.stats().current.total;
        const y = k.linear(x, w);
        const peak = k.memory.stats().peak.total - before;
        // x's bf16 copy and y in bf16: no [N, K] bf16 weight
        assert.equal(peak, (x.numel + y.numel) * 2, `[${c.x}] x [${N}, ${K}]: peak ${peak} B`);
        return [y, linearComposite(x, w)];
      }));
      assert.deepEqual(Array.from(fused.toTypedArray() as Uint16Array), Array.from(composite.toTypedArray() as Uint16Array), `[${c.x}] x [${N}, ${K}]`);
      for (const t of [x, w, fused, composite]) t.dispose();
    }
  });

  test('gradients match the float64 formulas dx = g W, dW = gᵀ x on the bf16-rounded operands', () => {
    const [M, K, N] = [33, 7, 257];
    const { x, w, r } = run((xx, ww) => k.linear(xx, ww), [M, K], N, 'bfloat16');
    // float64 copies (reference backend) of what the GEMMs see: x and W rounded to bf16, g = r (bf16 already)
    const f64 = (t: k.Tensor): k.Tensor => k.noGrad(() => t.to('bfloat16').to('float64').to('ref'));
    const [xh, wh, g] = [f64(x), f64(w), f64(r)];
    // dx is rounded once to bf16 (8 bits): relative error <= 2^-8 of the largest partial sum
    assertClose(x.grad!, k.matmul(g, wh), { atol: 0.05, rtol: 2 ** -7, what: 'dx' });
    // dW: products of bf16 values are exact in float32 and 33 of them are summed in float32, never
    // rounded to bf16 (that would miss by ~2^-9 of |dW|, far outside this tolerance)
    assertClose(w.grad!, k.matmul(g.transpose(0, 1), xh), { atol: 1e-5, rtol: 1e-5, what: 'dW' });
    for (const t of [x, w, r, xh, wh, g]) t.dispose();
  });

  test('autocast off, a bias, or a frozen weight take the other paths', () => {
    const x = seededTensor([3, 5], 'float32', 'cpu', 1).requiresGrad_();
    const w = seededTensor([4, 5], 'float32', 'cpu', 2).requiresGrad_();
    const b = seededTensor([4], 'float32', 'cpu', 3);
    const frozen = seededTensor([4, 5], 'float32', 'cpu', 4);
    assert.equal(k.linear(x, w).dtype, 'float32', 'no autocast: the float32 product');
    k.autocast('bfloat16', () => {
      // the composite for a frozen weight holds its half copy (W needs no gradient, so no re-rounding is wanted)
      const before = k.memory.stats().current.total;
      const y = k.linear(x, frozen);
      assert.equal(k.memory.stats().current.total - before, 3 * 5 * 2 + 4 * 5 * 2 + 3 * 4 * 2, 'x, W and y in bf16');
      y.dispose();
      assert.equal(k.linear(x, w, b).dtype, 'float32', 'with a bias: the fused linear (float32 output)');
    });
    for (const t of [x, w, b, frozen]) t.dispose();
  });
});
