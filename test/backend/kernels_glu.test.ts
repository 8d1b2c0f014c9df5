// The gated activation of every native device (cpu: native/glu.cc; cuda: glu in
// native/cuda/kernels/nn.cu, on a GPU or the emulator) in float32 against the float64 reference
// backend, forward and both gradients through the public op, for silu, gelu_tanh and gelu (erf)
// on odd sizes that break vector tails (1, 7, 33, 257) and on strided inputs (the halves of a
// fused gate_up projection, a transposed view); and against the composite act(gate) * up on the
// same device within 1e-6 (both use the device's same float32 activation formulas). Tolerances:
// rtol 1e-5 / atol 1e-6 (the activations are accurate to a few ulp: CUDA's expf/tanhf/erff are
// within 2 ulp, far inside rtol 1e-5). On cpu the AVX2 and SSE2 bodies also run in child
// processes with KESTREL_SIMD set (the addon reads the CPU features once per process).
import { ALL_DEVICES, type Device, skipUnless } from '../devices.js';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import * as k from '../../src/index.js';
import { assertClose, like, onCpuThreads, runChild, seededTensor } from '../helpers.js';

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

/** gate/up as given (possibly strided views of one buffer) on their device, and the same values on ref. */
function check(d: Device, what: string, gate: k.Tensor, up: k.Tensor, seed: number): void {
  k.tidy(() => {
    const dy = seededTensor([...gate.shape], 'float32', d, seed, -1, 1);
    for (const act of ACTS) {
      const got = run((g, u) => k.glu(g, u, act), gate, up, dy);
      const want = run((g, u) => k.glu(g, u, act), like(gate, 'ref', 'float64'), like(up, 'ref', 'float64'), like(dy, 'ref', 'float64'));
      const comp = run((g, u) => k.gluComposite(g, u, act), gate, up, dy);
      ['forward', 'dgate', 'dup'].forEach((part, i) => {
        assertClose(got[i], want[i], { ...TIGHT, what: `${d} ${what} ${act} ${part} vs ref` });
        assertClose(got[i], comp[i], { atol: 1e-6, rtol: 0, what: `${d} ${what} ${act} ${part} vs composite` });
      });
    }
  });
}

const GROUPS: Record<string, (d: Device) => void> = {
  contiguous(d) {
    for (const rows of [1, 7, 33])
      for (const F of [1, 7, 33, 257]) {
        const g = seededTensor([rows, F], 'float32', d, rows * 1000 + F, -6, 6);
        const u = seededTensor([rows, F], 'float32', d, rows * 1000 + F + 1, -2, 2);
        check(d, `[${rows},${F}]`, g, u, 5);
      }
  },
  strided(d) {
    // halves of a fused [B, T, 2F] gate_up output: rows of stride 2F, inner stride 1
    for (const F of [7, 33]) {
      const gu = seededTensor([2, 5, 2 * F], 'float32', d, F, -5, 5);
      check(d, `gate_up halves F=${F}`, k.narrow(gu, -1, 0, F), k.narrow(gu, -1, F, F), 6);
    }
    // a transposed gate (inner stride != 1, gathered) with a contiguous up
    const gt = k.transpose(seededTensor([33, 7], 'float32', d, 9, -5, 5), 0, 1);
    check(d, 'transposed gate', gt, seededTensor([7, 33], 'float32', d, 10), 7);
  },
};

function deviceTests(d: Device): void {
  for (const [name, f] of Object.entries(GROUPS)) test(`glu ${name} vs float64 reference and composite`, () => f(d));

  test('large inputs match the reference and the composite', () => {
    k.tidy(() => {
      const g = seededTensor([64, 1031], 'float32', d, 1, -8, 8);
      const u = seededTensor([64, 1031], 'float32', d, 2);
      check(d, '[64,1031]', g, u, 3);
    });
  });

  test('only the gradients that are needed are computed', () => {
    k.tidy(() => {
      const g = seededTensor([3, 9], 'float32', d, 1).requiresGrad_();
      const u = seededTensor([3, 9], 'float32', d, 2);
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

  test('bad arguments throw an Error naming the op or kernel', () => {
    const kern = k.getBackend(d).kernels;
    k.tidy(() => {
      const f32 = (shape: number[]) => k.zeros(shape, { backend: d });
      assert.throws(() => k.glu(f32([2, 3]), f32([2, 4]), 'silu'), /glu: gate \[2, 3\] and up \[2, 4\] must have the same shape/);
      assert.throws(() => k.glu(f32([2, 3]), k.zeros([2, 3], { backend: d, dtype: 'float64' }), 'silu'), /glu: gate and up dtypes differ/);
      assert.throws(() => kern.glu('silu', f32([2, 3]), f32([2, 3]), f32([3, 2])), /glu: gate \[2,3\] and out \[3,2\] must have the same shape/);
      assert.throws(() => kern.glu('silu', f32([2, 3]), f32([2, 3]), k.transpose(f32([3, 2]), 0, 1)), /glu: out .* must be contiguous/);
      const f64 = k.zeros([2, 3], { backend: d, dtype: 'float64' });
      assert.throws(() => kern.glu('gelu_erf', f64, f64, f64), /glu: gate must be float32/);
      assert.throws(() => kern.gluBackward('silu', f32([2, 3]), f32([2, 3]), f32([2, 3]), f32([2, 4]), null), /glu_backward: gate \[2,3\] and dgate \[2,4\]/);
    });
  });
}

if (CHILD) {
  onCpuThreads(() => {
    for (const f of Object.values(GROUPS)) f('cpu');
  });
} else {
  for (const device of ALL_DEVICES)
    describe(`gated activation on ${device}`, { skip: skipUnless(device) }, () => {
      deviceTests(device);
      if (device === 'cpu')
        for (const simd of ['avx2', 'scalar'])
          test(`all groups under KESTREL_SIMD=${simd}, 1 and 2 threads (child process)`, () => {
            runChild(fileURLToPath(import.meta.url), { KESTREL_SIMD: simd, KESTREL_GLU_CHILD: '1' }, 60_000);
          });
    });
}
