// The in-place paths of the fused RoPE (forward on its own contiguous copy, backward on the
// incoming gradient) and RMSNorm (dx written into dy's buffer): bit-identical to the out-of-place
// paths (same kernel, same arithmetic), one activation-size buffer lower in the memory stats'
// peak, and never used on a buffer something else still reads (the input, a user's gradient, a
// gradient autograd hands to two consumers). Runs on the reference backend and, when built, cpu.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { ropeFused } from '../../src/ops/fused/rope.js';
import { rmsNormFused } from '../../src/ops/fused/norm.js';
import { hasCpu, seededTensor } from '../helpers.js';

const BACKENDS = hasCpu() ? (['ref', 'cpu'] as const) : (['ref'] as const);
const dtypeOf = (b: 'ref' | 'cpu'): k.DType => (b === 'ref' ? 'float64' : 'float32');
const values = (t: k.Tensor): number[] => [...t.toFloat32Array()];

function tables(backend: 'ref' | 'cpu', T: number, hd: number): { cos: k.Tensor; sin: k.Tensor } {
  const pos = k.tensor([Array.from({ length: T }, (_, i) => 3 * i + 1)], { dtype: 'int64', backend });
  const { cos, sin } = k.rotaryTables(pos, hd, 100);
  return { cos: cos.to(dtypeOf(backend)), sin: sin.to(dtypeOf(backend)) };
}

/** Extra bytes at the peak of fn (relative to the live bytes before it). */
function peakOf(fn: () => void): number {
  const base = k.memory.stats().current.total;
  k.memory.resetPeak();
  k.tidy(fn);
  return k.memory.stats().peak.total - base;
}

type Rope = (x: k.Tensor, inPlace: boolean) => k.Tensor;
type Norm = (x: k.Tensor, inPlace: boolean) => k.Tensor;

for (const backend of BACKENDS)
  describe(`in-place rope and rmsNorm (${backend})`, () => {
    const dt = dtypeOf(backend);
    const [B, H, T, hd] = [2, 3, 5, 8];
    const { cos, sin } = tables(backend, T, hd);
    const w = seededTensor([B, H, T, hd], dt, backend, 50);

    test('rope: in-place and out-of-place give bit-identical outputs and gradients', () => {
      for (const interleaved of [false, true]) {
        const rope: Rope = (x, inPlace) => ropeFused(x, cos, sin, interleaved, { inPlace });
        const run = (inPlace: boolean) => k.tidy(() => {
          const base = seededTensor([B, T, H, hd], dt, backend, 7).requiresGrad_();
          const y = rope(base.transpose(1, 2), inPlace); // a strided input: rope rotates its own copy
          y.mul(w).sum().backward(); // the gradient reaching rope is mul's fresh buffer
          return [values(y), values(base.grad!)];
        });
        assert.deepEqual(run(true), run(false), `interleaved=${interleaved}`);
      }
    });

    test('rope: the in-place paths lower the peak by one activation buffer', () => {
      const rope: Rope = (x, inPlace) => ropeFused(x, cos, sin, false, { inPlace });
      const bytes = B * H * T * hd * (dt === 'float64' ? 8 : 4);
      const x = seededTensor([B, T, H, hd], dt, backend, 7);
      const fwd = (inPlace: boolean) => peakOf(() => k.noGrad(() => rope(x.transpose(1, 2), inPlace)));
      assert.equal(fwd(false) - fwd(true), bytes, 'forward');
      const leaf = seededTensor([B, H, T, hd], dt, backend, 8).requiresGrad_();
      const bwd = (inPlace: boolean) => {
        // tanh's backward hands rope one fresh buffer (mul's would compute a second, unused gradient)
        const y = rope(leaf, inPlace).tanh().sum();
        const p = peakOf(() => y.backward());
        y.dispose();
        leaf.zeroGrad();
        return p;
      };
      // lower by one buffer, give or take the root's scalar gradient (whether it is still live at the peak)
      const saved = bwd(false) - bwd(true);
      assert.ok(saved >= bytes - 8 && saved <= bytes, `backward peak lower by ${saved} bytes, one buffer is ${bytes}`);
    });

    test('rope: never in place on the input, a user gradient or a gradient shared by two consumers', () => {
      k.tidy(() => {
        const rope: Rope = (x, inPlace) => ropeFused(x, cos, sin, false, { inPlace });
        // a contiguous temporary the caller still holds and uses afterwards
        const x = seededTensor([B, H, T, hd], dt, backend, 9).mul(1);
        const before = values(x);
        const y = rope(x, true);
        assert.deepEqual(values(x), before, 'input unchanged');
        assert.deepEqual(values(y), values(rope(x, false)));
        // a gradient passed by the user stays the user's
        const leaf = seededTensor([B, H, T, hd], dt, backend, 10).requiresGrad_();
        const g = seededTensor([B, H, T, hd], dt, backend, 11);
        const gBefore = values(g);
        rope(leaf, true).backward(g);
        assert.deepEqual(values(g), gBefore, 'user gradient unchanged');
        // one gradient buffer handed to two rope nodes (add's backward passes it to both)
        const grads = (inPlace: boolean) => {
          const [a, b] = [seededTensor([B, H, T, hd], dt, backend, 12).requiresGrad_(), seededTensor([B, H, T, hd], dt, backend, 13).requiresGrad_()];
          rope(a, inPlace).add(rope(b, inPlace)).mul(w).sum().backward();
          return [values(a.grad!), values(b.grad!)];
        };
        assert.deepEqual(grads(true), grads(false), 'shared gradient');
      });
    });

    test('rmsNorm backward: in place equals out of place, lowers the peak, never touches a shared dy', () => {
      const [rows, D] = [33, 64];
      const wt = seededTensor([D], dt, backend, 20, 0.5, 1.5).requiresGrad_();
      const v = seededTensor([rows, D], dt, backend, 21);
      const norm: Norm = (x, inPlace) => rmsNormFused(x, wt, 1e-5, 0, { inPlace });
      const run = (inPlace: boolean) => k.tidy(() => {
        const x = seededTensor([rows, D], dt, backend, 22).requiresGrad_();
        wt.zeroGrad();
        const y = norm(x, inPlace);
        y.mul(v).sum().backward();
        return [values(y), values(x.grad!), values(wt.grad!)];
      });
      assert.deepEqual(run(true), run(false), 'outputs and gradients');
      const x = seededTensor([rows, D], dt, backend, 23).requiresGrad_();
      const peak = (inPlace: boolean) => {
        const y = norm(x, inPlace).tanh().sum();
        const p = peakOf(() => y.backward());
        y.dispose();
        x.zeroGrad();
        wt.zeroGrad();
        return p;
      };
      assert.equal(peak(false) - peak(true), rows * D * (dt === 'float64' ? 8 : 4), 'peak');
      k.tidy(() => {
        const g = seededTensor([rows, D], dt, backend, 24);
        const gBefore = values(g);
        norm(x, true).backward(g);
        assert.deepEqual(values(g), gBefore, 'user gradient unchanged');
        const shared = (inPlace: boolean) => {
          const [a, b] = [seededTensor([rows, D], dt, backend, 25).requiresGrad_(), seededTensor([rows, D], dt, backend, 26).requiresGrad_()];
          norm(a, inPlace).add(norm(b, inPlace)).mul(v).sum().backward();
          return [values(a.grad!), values(b.grad!)];
        };
        assert.deepEqual(shared(true), shared(false), 'shared gradient');
      });
      wt.zeroGrad();
    });
  });

describe('autograd buffers', () => {
  test('two gradients for one tensor are summed into the first one\'s buffer', () => {
    k.tidy(() => {
      const n = 1000;
      const x = seededTensor([n], 'float64', 'ref', 30).requiresGrad_();
      const y = x.tanh().add(x.sigmoid()).sum();
      const p = peakOf(() => y.backward());
      // d/dx = tanh'(x) + sigmoid'(x), computed by hand
      const xs = x.toFloat32Array();
      const want = Array.from(x.toTypedArray() as Float64Array, (v) => 1 - Math.tanh(v) ** 2 + Math.exp(-v) / (1 + Math.exp(-v)) ** 2);
      const got = x.grad!.toTypedArray() as Float64Array;
      want.forEach((w, i) => assert.ok(Math.abs(got[i] - w) < 1e-12, `grad[${i}] of x=${xs[i]}`));
      // the two [n] gradients and nothing else of that size (a third would be their sum's buffer)
      assert.ok(p <= 2 * n * 8 + 64, `backward peak ${p} bytes`);
    });
  });

  test('an embedding\'s gradient is one [V, D] buffer', () => {
    k.tidy(() => {
      const [V, D] = [500, 16];
      const w = seededTensor([V, D], 'float64', 'ref', 31).requiresGrad_();
      const ids = k.tensor([3, 7, 3, 499], { dtype: 'int64', backend: 'ref' });
      const y = k.embedding(ids, w).sum();
      const p = peakOf(() => y.backward());
      assert.ok(p < 2 * V * D * 8, `backward peak ${p} bytes for a ${V * D * 8}-byte gradient`);
      const g = w.grad!.toTypedArray() as Float64Array;
      // row 3 was looked up twice, rows 7 and 499 once, the rest never
      assert.deepEqual([g[3 * D], g[7 * D], g[499 * D], g[0]], [2, 1, 1, 0]);
    });
  });
});
