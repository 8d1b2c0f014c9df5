// The native gated activation (native/glu.cc) in float32 against the float64 reference backend,
// forward and both gradients through the public op, for silu, gelu_tanh and gelu (erf) on odd
// sizes that break vector tails (1, 7, 33, 257) and on strided inputs (the halves of a fused
// gate_up projection, a transposed view); and against the composite act(gate) * up on the same
// backend within 1e-6 (both use the same float32 activation code). Tolerances: rtol 1e-5 /
// atol 1e-6 (the activations are accurate to a few ulp). The AVX2 and SSE2 bodies run in child
// processes with KESTREL_SIMD set (the addon reads the CPU features once per process).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import * as k from '../../src/index.js';
import { loadNative, nativeLoadError } from '../../src/backend/addon.js';
import { assertClose, like, runChild, seededTensor } from '../helpers.js';

const skip = k.hasBackend('cpu') ? false : `cpu backend not built (${nativeLoadError()})`;
const CHILD = process.env.KESTREL_GLU_CHILD === '1';
const TIGHT = { atol: 1e-6, rtol: 1e-5 };
const ACTS = ['silu', 'gelu_tanh', 'gelu'] as const;

/** Output and input gradients of f(gate, up) for the upstream gradient dy, as float64 arrays. */
function run(f: (g: k.Tensor, u: k.Tensor) => k.Tensor, gate: k.Tensor, up: k.Tensor, dy: k.Tensor): Float64Array[] {
  return k.tidy(() => {
    const [g, u] = [gate.detach().requiresGrad_(), up.detach().requiresGrad_()];
    const y = f(g, u);
    y.backward(dy);
    return [y, g.grad!, u.grad!].map((t) => Float64Array.from(t.toFloat32Array()));
  });
}

/** gate/up as given (possibly strided views of one buffer) on cpu, and the same values on ref. */
function check(what: string, gate: k.Tensor, up: k.Tensor, seed: number): void {
  k.tidy(() => {
    const dy = seededTensor([...gate.shape], 'float32', 'cpu', seed, -1, 1);
    for (const act of ACTS) {
      const got = run((g, u) => k.glu(g, u, act), gate, up, dy);
      const want = run((g, u) => k.glu(g, u, act), like(gate, 'ref', 'float64'), like(up, 'ref', 'float64'), like(dy, 'ref', 'float64'));
      const comp = run((g, u) => k.gluComposite(g, u, act), gate, up, dy);
      ['forward', 'dgate', 'dup'].forEach((part, i) => {
        assertClose(got[i], want[i], { ...TIGHT, what: `${what} ${act} ${part} vs ref` });
        assertClose(got[i], comp[i], { atol: 1e-6, rtol: 0, what: `${what} ${act} ${part} vs composite` });
      });
    }
  });
}

const GROUPS: Record<string, () => void> = {
  contiguous() {
    for (const rows of [1, 7, 33])
      for (const F of [1, 7, 33, 257]) {
        const g = seededTensor([rows, F], 'float32', 'cpu', rows * 1000 + F, -6, 6);
        const u = seededTensor([rows, F], 'float32', 'cpu', rows * 1000 + F + 1, -2, 2);
        check(`[${rows},${F}]`, g, u, 5);
      }
  },
  strided() {
    // halves of a fused [B, T, 2F] gate_up output: rows of stride 2F, inner stride 1
    for (const F of [7, 33]) {
      const gu = seededTensor([2, 5, 2 * F], 'float32', 'cpu', F, -5, 5);
      check(`gate_up halves F=${F}`, k.narrow(gu, -1, 0, F), k.narrow(gu, -1, F, F), 6);
    }
    // a transposed gate (inner stride != 1, gathered) with a contiguous up
    const gt = k.transpose(seededTensor([33, 7], 'float32', 'cpu', 9, -5, 5), 0, 1);
    check('transposed gate', gt, seededTensor([7, 33], 'float32', 'cpu', 10), 7);
  },
};

if (CHILD) {
  const addon = loadNative();
  if (!addon) throw new Error(nativeLoadError());
  for (const threads of [1, 2]) {
    addon.setThreads(threads);
    for (const f of Object.values(GROUPS)) f();
  }
  console.log('ok');
} else {
  for (const [name, f] of Object.entries(GROUPS)) test(`cpu glu ${name} vs float64 reference and composite`, { skip }, f);

  test('large inputs run on both threads and match the composite', { skip }, () => {
    k.tidy(() => {
      const g = seededTensor([64, 1031], 'float32', 'cpu', 1, -8, 8);
      const u = seededTensor([64, 1031], 'float32', 'cpu', 2);
      check('[64,1031]', g, u, 3);
    });
  });

  test('only the gradients that are needed are computed', { skip }, () => {
    k.tidy(() => {
      const g = seededTensor([3, 9], 'float32', 'cpu', 1).requiresGrad_();
      const u = seededTensor([3, 9], 'float32', 'cpu', 2);
      k.glu(g, u, 'silu').sum().backward();
      assert.ok(g.grad);
      assert.equal(u.grad, null);
      // d/dgate of sum(silu(g) u) = u silu'(g), from the composite's own derivative
      const want = k.tidy(() => {
        const gg = g.detach().requiresGrad_();
        k.gluComposite(gg, u, 'silu').sum().backward();
        return gg.grad!.toFloat32Array();
      });
      assertClose(g.grad!, want, { ...TIGHT, what: 'dgate alone' });
    });
  });

  test('bad arguments throw an Error naming the op or kernel', { skip }, () => {
    const cpu = k.getBackend('cpu');
    k.tidy(() => {
      const f32 = (shape: number[]) => k.zeros(shape, { backend: 'cpu' });
      assert.throws(() => k.glu(f32([2, 3]), f32([2, 4]), 'silu'), /glu: gate \[2, 3\] and up \[2, 4\] must have the same shape/);
      assert.throws(() => k.glu(f32([2, 3]), k.zeros([2, 3], { backend: 'cpu', dtype: 'float64' }), 'silu'), /glu: gate and up dtypes differ/);
      assert.throws(() => cpu.kernels.glu('silu', f32([2, 3]), f32([2, 3]), f32([3, 2])), /glu: gate \[2,3\] and out \[3,2\] must have the same shape/);
      assert.throws(() => cpu.kernels.glu('silu', f32([2, 3]), f32([2, 3]), k.transpose(f32([3, 2]), 0, 1)), /glu: out .* must be contiguous/);
      const f64 = k.zeros([2, 3], { backend: 'cpu', dtype: 'float64' });
      assert.throws(() => cpu.kernels.glu('gelu_erf', f64, f64, f64), /glu: gate must be float32/);
      assert.throws(() => cpu.kernels.gluBackward('silu', f32([2, 3]), f32([2, 3]), f32([2, 3]), f32([2, 4]), null), /glu_backward: gate \[2,3\] and dgate \[2,4\]/);
    });
  });

  for (const simd of ['avx2', 'scalar'])
    test(`all groups under KESTREL_SIMD=${simd}, 1 and 2 threads (child process)`, { skip }, () => {
      runChild(fileURLToPath(import.meta.url), { KESTREL_SIMD: simd, KESTREL_GLU_CHILD: '1' }, 60_000);
    });
}
