// The fused nn kernels on the GPU: softmax, glu and rope here (native/cuda/kernels/nn.cu), the
// norms (norms.ts) and cross-entropy (loss.ts) beside. Arguments are checked as native/nn.cc and
// native/glu.cc check them (the same kernel names in the messages) before launching; besides
// float32 they take bfloat16/float16 operands (computed in float32, rounded once: Backend.halfElementwise),
// with cos/sin float32 for rope and a float32 y beside half gradients for softmax_backward.
import { isHalf } from '../../../tensor/dtype.js';
import { GLU_ACTIVATIONS, type Kernels, type View } from '../../kernels.js';
import { dims, requireContiguous, requireSameShape } from '../checks.js';
import { SUFFIX, pairSuffix } from '../dtypes.js';
import { collapse, gridFor, launch, newParams } from '../launch.js';
import { cudaKernel } from '../modules.js';
import { lossKernels } from './loss.js';
import { normKernels } from './norms.js';
import { ROW_DTYPES, needF32, needSame, rowLaunch, rowsOf } from './rows.js';

function softmaxLaunch(name: string, ptrs: [View, string][], rows: number, D: number, log: boolean): void {
  if (rows * D === 0) return;
  const l = rowLaunch(rows, D);
  const p = newParams();
  for (const [v, what] of ptrs) p.view_(v, what);
  p.i64(rows).i64(D).i32(log ? 1 : 0);
  launch(cudaKernel('nn', `${name}_${l.form}_${pairSuffix(ptrs[0][0].dtype, ptrs[1][0].dtype)}`), p, l);
}

/**
 * `second` may take `first`'s dtype, or float32 when `first` is half: softmax's out for a half x,
 * softmax_backward's y for half gradients (the recomputed float32 probabilities).
 */
function halfOrSame(kernel: string, what: string, v: View, like: View, likeName: string): void {
  needF32(kernel, what, v, ROW_DTYPES);
  if (v.dtype !== like.dtype && !(v.dtype === 'float32' && isHalf(like.dtype)))
    throw new Error(`cuda ${kernel}: ${what} has dtype ${v.dtype}; it must be ${likeName}'s (${like.dtype})${isHalf(like.dtype) ? ' or float32' : ''}`);
  const [a, b] = [v.layout.shape, like.layout.shape];
  if (a.length !== b.length || a.some((s, i) => s !== b[i])) throw new Error(`cuda ${kernel}: ${what} ${dims(a)} must have the input's shape ${dims(b)}`);
}

/** glu's operands share one dtype: float32, bfloat16 or float16 (computed in float32). */
function gluDType(kernel: string, what: string, v: View, like: View): void {
  if (!ROW_DTYPES.includes(v.dtype)) throw new Error(`cuda ${kernel}: ${what} must be float32, bfloat16 or float16, got ${v.dtype} ${dims(v.layout.shape)}`);
  if (v.dtype !== like.dtype) throw new Error(`cuda ${kernel}: ${what} has dtype ${v.dtype}, gate ${like.dtype}`);
}

function gluOut(kernel: string, gate: View, what: string, v: View | null): void {
  if (!v) return;
  gluDType(kernel, what, v, gate);
  requireSameShape(kernel, gate, 'gate', v, what);
  requireContiguous(kernel, v, what);
}

const ownKernels: Pick<Kernels, 'softmax' | 'softmaxBackward' | 'glu' | 'gluBackward' | 'rope'> = {
  softmax(x, out, log) {
    const { rows, D } = rowsOf('softmax', x, 0, ROW_DTYPES);
    halfOrSame('softmax', 'out', out, x, 'x');
    softmaxLaunch('softmax', [[x, 'x'], [out, 'out']], rows, D, log);
  },
  softmaxBackward(y, dy, dx, log) {
    const { rows, D } = rowsOf('softmax_backward', dy, 0, ROW_DTYPES);
    halfOrSame('softmax_backward', 'y', y, dy, 'dy');
    needSame('softmax_backward', 'dx', dx, dy, ROW_DTYPES);
    softmaxLaunch('softmax_backward', [[y, 'y'], [dy, 'dy'], [dx, 'dx']], rows, D, log);
  },
  glu(act, gate, up, out) {
    const k = 'glu';
    const code = GLU_ACTIVATIONS.indexOf(act);
    if (code < 0) throw new Error(`cuda glu: unknown activation '${act}'`);
    for (const [v, what] of [[gate, 'gate'], [up, 'up']] as const) gluDType(k, what, v, gate);
    requireSameShape(k, gate, 'gate', up, 'up');
    gluOut(k, gate, 'out', out);
    const n = out.layout.numel;
    if (n === 0) return;
    const c = collapse(gate.layout.shape, [gate.layout.strides, up.layout.strides]);
    const p = newParams().i32(code).view_(gate, 'gate').strided(c.shape, c.strides[0]).view_(up, 'up').strided(c.shape, c.strides[1])
      .view_(out, 'out').i64(n);
    launch(cudaKernel('nn', `glu_${SUFFIX[gate.dtype]}`), p, { grid: gridFor(n), block: 256 });
  },
  gluBackward(act, gate, up, dy, dgate, dup) {
    const k = 'glu_backward';
    const code = GLU_ACTIVATIONS.indexOf(act);
    if (code < 0) throw new Error(`cuda glu_backward: unknown activation '${act}'`);
    if (!dgate && !dup) return;
    for (const [v, what] of [[gate, 'gate'], [up, 'up'], [dy, 'dy']] as const) gluDType(k, what, v, gate);
    requireSameShape(k, gate, 'gate', up, 'up');
    requireSameShape(k, gate, 'gate', dy, 'dy');
    gluOut(k, gate, 'dgate', dgate);
    gluOut(k, gate, 'dup', dup);
    const n = gate.layout.numel;
    if (n === 0) return;
    const c = collapse(gate.layout.shape, [gate.layout.strides, up.layout.strides, dy.layout.strides]);
    const p = newParams().i32(code).view_(gate, 'gate').strided(c.shape, c.strides[0]).view_(up, 'up').strided(c.shape, c.strides[1])
      .view_(dy, 'dy').strided(c.shape, c.strides[2]).view_(dgate, 'dgate').view_(dup, 'dup').i64(n);
    launch(cudaKernel('nn', `glu_backward_${SUFFIX[gate.dtype]}`), p, { grid: gridFor(n), block: 256 });
  },
  rope(x, cos, sin, out, opts) {
    const k = 'rope';
    needF32(k, 'x', x, ROW_DTYPES);
    needF32(k, 'cos', cos);
    needF32(k, 'sin', sin);
    needSame(k, 'out', out, x, ROW_DTYPES);
    const xs = x.layout.shape;
    if (xs.length !== 4 || xs[3] % 2 !== 0) throw new Error(`cuda rope: x ${dims(xs)} must be [B, H, T, hd] with an even hd`);
    const [B, H, T, hd] = xs;
    const [cs, ss] = [cos.layout.shape, sin.layout.shape];
    const ok = cs.length === 3 && (cs[0] === B || cs[0] === 1) && cs[1] === T && cs[2] === hd / 2 &&
      ss.length === 3 && ss.every((s, i) => s === cs[i]);
    if (!ok) throw new Error(`cuda rope: cos ${dims(cs)} / sin ${dims(ss)} must be [B|1, T, hd/2] for x ${dims(xs)}`);
    const rows = B * H * T;
    const half = hd / 2;
    if (rows * half === 0) return;
    // a group of threads per row, as many as the row has pairs (up to a warp)
    const group = Math.min(32, 2 ** Math.ceil(Math.log2(half)));
    const p = newParams().view_(x, 'x').view_(cos, 'cos').view_(sin, 'sin').view_(out, 'out').i64(rows).i64(H).i64(T).i64(half)
      .i32(group).i32(cs[0] === B && B !== 1 ? 1 : 0).i32(opts.interleaved ? 1 : 0).i32(opts.inverse ? 1 : 0);
    launch(cudaKernel('nn', `rope_${SUFFIX[x.dtype]}`), p, { grid: gridFor(rows * group), block: 256 });
  },
};

export const nnKernels: Pick<
  Kernels,
  'softmax' | 'softmaxBackward' | 'glu' | 'gluBackward' | 'rmsNorm' | 'rmsNormBackward' | 'layerNorm' | 'layerNormBackward' |
  'crossEntropy' | 'crossEntropyBackward' | 'rope'
> = { ...ownKernels, ...normKernels, ...lossKernels };
