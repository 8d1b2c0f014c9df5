// The shared op suite on every native backend (cpu, and cuda on a GPU or the emulator): every op
// of the table (cases.ts) in float32, forward and gradients, against the float64 reference, with
// contiguous and non-contiguous inputs. Tolerance: float32 rounding over short reductions
// (rtol 1e-4, atol 1e-5).
import { ALL_DEVICES, skipUnless } from '../devices.js';
import { describe, test } from 'node:test';
import * as k from '../../src/index.js';
import { assertClose, seeded } from '../helpers.js';
import { cases } from '../ops/cases.js';

/** A float leaf with seeded values; `strided` stores it transposed and views it back. */
function leafOn(backend: string, dtype: k.DType, shape: number[], seed: number, lo: number, hi: number, strided: boolean): k.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = seeded(n, seed, lo, hi);
  if (!strided || shape.length < 2) return k.tensor(data, { shape, dtype, backend, requiresGrad: true });
  const t = shape.length;
  const swapped = [...shape];
  [swapped[t - 2], swapped[t - 1]] = [swapped[t - 1], swapped[t - 2]];
  return k.tidy(() => {
    const base = k.tensor(data, { shape, dtype, backend }).transpose(-1, -2).contiguous(); // values of x^T, contiguous
    return base.transpose(-1, -2).detach().requiresGrad_(); // x again, as a non-contiguous view
  });
}

function run(c: (typeof cases)[number], backend: string, dtype: k.DType, strided: boolean) {
  return k.tidy(() => {
    const xs = c.shapes.map((s, i) => leafOn(backend, dtype, s, 17 + 31 * i, c.lo ?? -1, c.hi ?? 1, strided));
    const y = c.f(...xs);
    const w = k.tensor(seeded(y.numel, 99), { shape: [...y.shape], dtype, backend });
    y.mul(w).sum().backward();
    return { y: y.toFloat32Array(), grads: xs.map((x) => x.grad?.toFloat32Array() ?? null) };
  });
}

for (const device of ALL_DEVICES)
  describe(`op table on ${device} vs the float64 reference`, { skip: skipUnless(device) }, () => {
  for (const c of cases)
    for (const strided of [false, true])
      test(`${c.name}${strided ? ' (non-contiguous inputs)' : ''}`, () => {
        const want = run(c, 'ref', 'float64', false);
        const got = run(c, device, 'float32', strided);
        const tol = { atol: 1e-5, rtol: 1e-4 };
        assertClose(got.y, want.y, { ...tol, what: `${c.name} forward` });
        want.grads.forEach((g, i) => assertClose(got.grads[i] ?? [], g ?? [], { ...tol, what: `${c.name} grad ${i}` }));
      });
});
