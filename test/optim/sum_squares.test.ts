// The sumSquares kernel (native/optim.cc, the ref backend's loop): sum(x²) of a float32 tensor in
// float64, the gradient-norm term of clipping and of optimizer-in-backward. Checked against a float64
// sum of the same values written out here (every square of a float32 is exact in a double, so the
// kernel may differ only by the order of the float64 additions: n 2^-52 relative at most), on odd sizes around
// the native kernel's 32768-element chunk, with 1 and 2 threads giving the same bits, and NaN/Infinity
// reported exactly when an element is not finite; on cpu also under KESTREL_SIMD=avx2 and scalar (child processes).
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { loadNative } from '../../src/backend/addon.js';
import { onCpuThreads, runChild, seeded } from '../helpers.js';

const CHILD = process.env.KESTREL_SQUARES_CHILD === '1';

const SIZES = [1, 7, 33, 257, 32768, 32769, 3 * 32768 + 5];

/** float64 sum of squares of the float32-rounded values, in index order. */
function reference(vals: Float32Array): number {
  let s = 0;
  for (const v of vals) s += v * v;
  return s;
}

function sumSquares(x: k.Tensor): number {
  const out = k.full([], 0, { dtype: 'float64', backend: x.backendName });
  k.getBackend(x.backendName).kernels.sumSquares!(x, out);
  const r = out.item();
  out.dispose();
  return r;
}

const backends = ['ref', ...(k.hasBackend('cpu') ? ['cpu'] : [])] as k.BackendName[];

/** The kernel against the float64 sum on odd sizes and around the 32768 chunk. */
function matchesReference(backend: k.BackendName): void {
  for (const n of SIZES) {
    // values spread over 2^-20 .. 2^20 so that float32 accumulation would lose digits
    const vals = Float32Array.from(seeded(n, n, -1, 1), (v, i) => v * 2 ** ((i % 41) - 20));
    const x = k.tensor(vals, { shape: [n], dtype: 'float32', backend });
    const want = reference(vals);
    const got = sumSquares(x);
    // both are float64 sums of the same non-negative terms in different orders: each within (n - 1) 2^-53 of the exact sum
    assert.ok(Math.abs(got - want) <= 2 * n * 2 ** -53 * want, `n ${n}: ${got} vs ${want}`);
    x.dispose();
  }
}

/** NaN or Infinity exactly when an element is; the largest floats' squares stay finite. */
function nonFiniteTells(backend: k.BackendName): void {
  for (const [bad, want] of [[NaN, NaN], [Infinity, Infinity], [-Infinity, Infinity]] as const) {
    const vals = new Float32Array(40000).fill(0.5);
    vals[39999] = bad;
    const x = k.tensor(vals, { shape: [40000], dtype: 'float32', backend });
    assert.ok(Object.is(sumSquares(x), want), `${bad}`);
    x.dispose();
  }
  const big = k.tensor([3.4e38, -3.4e38], { dtype: 'float32', backend });
  assert.ok(Number.isFinite(sumSquares(big)) && sumSquares(big) > 2e77, 'the squares of the largest floats do not overflow a double');
  big.dispose();
}

if (CHILD) {
  onCpuThreads(() => {
    matchesReference('cpu');
    nonFiniteTells('cpu');
  });
} else
  for (const backend of backends)
    describe(`sumSquares (${backend})`, () => {
      test('equals the float64 sum of squares on odd sizes and around the 32768 chunk', () => matchesReference(backend));
      test('NaN or Infinity exactly when an element is; float32 max squared stays finite', () => nonFiniteTells(backend));
      if (backend === 'cpu')
        for (const simd of ['avx2', 'scalar'])
          test(`both checks under KESTREL_SIMD=${simd}, 1 and 2 threads (child process)`, () => {
            runChild(fileURLToPath(import.meta.url), { KESTREL_SIMD: simd, KESTREL_SQUARES_CHILD: '1' }, 60_000);
          });
    });

describe('sumSquares (cpu, native checks)', { skip: !k.hasBackend('cpu') && 'the native backend is not built' }, () => {
  test('the same bits on 1 and 2 threads (fixed chunks added in order)', () => {
    const addon = loadNative()!;
    const threads = addon.info().threads as number;
    const n = 5 * 32768 + 77;
    const x = k.tensor(Float32Array.from(seeded(n, 3, -3, 3)), { shape: [n], dtype: 'float32', backend: 'cpu' });
    try {
      const got = [1, 2].map((t) => {
        addon.setThreads(t);
        return sumSquares(x);
      });
      assert.ok(Object.is(got[0], got[1]), `${got[0]} vs ${got[1]}`);
    } finally {
      addon.setThreads(threads);
      x.dispose();
    }
  });

  test('a non-contiguous or non-float32 operand and a non-float64 out are refused by name', () => {
    const kernels = k.getBackend('cpu').kernels;
    const x = k.tensor([1, 2, 3, 4, 5, 6], { shape: [2, 3], dtype: 'float32', backend: 'cpu' });
    const out = k.full([], 0, { dtype: 'float64', backend: 'cpu' });
    const out32 = k.full([], 0, { dtype: 'float32', backend: 'cpu' });
    assert.throws(() => kernels.sumSquares!(x.transpose(0, 1), out), /cpu sumSquares: x must be a contiguous float32 tensor of 6 elements/);
    assert.throws(() => kernels.sumSquares!(x, out32), /cpu sumSquares: out must be one float64, got float32/);
    kernels.sumSquares!(x, out);
    assert.equal(out.item(), 91);
    for (const t of [x, out, out32]) t.dispose();
  });
});

describe('gradSquaredNorm and optimizer in backward read each gradient once', { skip: !k.hasBackend('cpu') && 'the native backend is not built' }, () => {
  test('gradSquaredNorm is sumSquares of the float32 gradient (a transposed or bf16 one converted first)', () => {
    const vals = Float32Array.from(seeded(7 * 33, 4, -2, 2));
    const g = k.tensor(vals, { shape: [7, 33], dtype: 'float32', backend: 'cpu' });
    assert.ok(Object.is(k.optim.gradSquaredNorm(g), sumSquares(g)));
    // a transposed gradient is summed in its own (other) order: equal to float64 rounding
    const t = k.optim.gradSquaredNorm(g.transpose(0, 1));
    assert.ok(Math.abs(t - reference(vals)) <= 1e-14 * t, `transposed: ${t} vs ${reference(vals)}`);
    const half = g.to('bfloat16');
    const widened = half.to('float32');
    assert.ok(Object.is(k.optim.gradSquaredNorm(half), sumSquares(widened)));
    for (const t of [g, half, widened]) t.dispose();
  });
});
