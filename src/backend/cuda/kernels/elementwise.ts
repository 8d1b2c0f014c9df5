// unary, unaryGrad, binary and where on the GPU (native/cuda/kernels/elementwise.cu); float
// operands may be bfloat16/float16 (loaded into float32, the result rounded once).
import type { DType } from '../../../tensor/dtype.js';
import { dtypeBytes } from '../../../tensor/dtype.js';
import { ARITH_OPS, COMPARE_OPS, type CompareOp, type Kernels, UNARY_OPS, type View } from '../../kernels.js';
import { requireContiguous, requireSameShape } from '../checks.js';
import { SUFFIX, requireDType } from '../dtypes.js';
import { collapse, gridFor, launch, newParams } from '../launch.js';
import { cudaKernel } from '../modules.js';

const BINARY_OPS = [...ARITH_OPS, ...COMPARE_OPS];
// bfloat16/float16 compute in float32 and round once (Backend.halfElementwise)
const FLOATS: DType[] = ['float32', 'float64', 'bfloat16', 'float16'];
const BINARY_DTYPES: DType[] = [...FLOATS, 'int32', 'int64'];
const INT_UNARY = new Set(['neg', 'abs', 'sign', 'clamp']);

export const elementwiseKernels: Pick<Kernels, 'unary' | 'unaryGrad' | 'binary' | 'where'> = {
  unary(op, x, out, p0, p1) {
    const float = FLOATS.includes(x.dtype);
    if (!float && !INT_UNARY.has(op))
      throw new Error(`cuda unary: ${op} does not support dtype ${x.dtype}`);
    if (out.dtype !== x.dtype) throw new Error(`cuda unary: out dtype ${out.dtype} differs from x dtype ${x.dtype}`);
    requireSameShape('unary', x, 'x', out, 'out');
    requireContiguous('unary', out, 'out');
    const n = out.layout.numel;
    if (n === 0) return;
    const c = collapse(x.layout.shape, [x.layout.strides]);
    const p = newParams().i32(UNARY_OPS.indexOf(op)).view_(x, 'x').strided(c.shape, c.strides[0]).view_(out, 'out').i64(n).f64(p0).f64(p1);
    launch(cudaKernel('elementwise', `unary_${SUFFIX[x.dtype]}`), p, { grid: gridFor(n), block: 256 });
  },
  unaryGrad(op, x, dy, dx, p0, p1) {
    requireDType('unary_grad', 'x', x.dtype, FLOATS);
    if (dy.dtype !== x.dtype || dx.dtype !== x.dtype) throw new Error(`cuda unary_grad: dtypes x=${x.dtype} dy=${dy.dtype} dx=${dx.dtype} must agree`);
    requireSameShape('unary_grad', x, 'x', dy, 'dy');
    requireSameShape('unary_grad', x, 'x', dx, 'dx');
    requireContiguous('unary_grad', dx, 'dx');
    const n = dx.layout.numel;
    if (n === 0) return;
    const c = collapse(x.layout.shape, [x.layout.strides, dy.layout.strides]);
    const p = newParams().i32(UNARY_OPS.indexOf(op)).view_(x, 'x').strided(c.shape, c.strides[0]).view_(dy, 'dy').strided(c.shape, c.strides[1])
      .view_(dx, 'dx').i64(n).f64(p0).f64(p1);
    launch(cudaKernel('elementwise', `unary_grad_${SUFFIX[x.dtype]}`), p, { grid: gridFor(n), block: 256 });
  },
  binary(op, a, b, out) {
    const cmp = (COMPARE_OPS as readonly string[]).includes(op as CompareOp);
    if (a.dtype !== b.dtype || !BINARY_DTYPES.includes(a.dtype))
      throw new Error(`cuda binary: ${op} needs a and b of one dtype among ${BINARY_DTYPES.join(', ')}; got ${a.dtype} and ${b.dtype}`);
    if (out.dtype !== (cmp ? 'bool' : a.dtype)) throw new Error(`cuda binary: ${op} writes ${cmp ? 'bool' : a.dtype}, out is ${out.dtype}`);
    requireSameShape('binary', a, 'a', out, 'out');
    requireSameShape('binary', b, 'b', out, 'out');
    requireContiguous('binary', out, 'out');
    const n = out.layout.numel;
    if (n === 0) return;
    const c = collapse(out.layout.shape, [a.layout.strides, b.layout.strides]);
    const p = newParams().i32(BINARY_OPS.indexOf(op)).view_(a, 'a').strided(c.shape, c.strides[0]).view_(b, 'b').strided(c.shape, c.strides[1])
      .view_(out, 'out').i64(n);
    launch(cudaKernel('elementwise', `${cmp ? 'compare' : 'binary'}_${SUFFIX[a.dtype]}`), p, { grid: gridFor(n), block: 256 });
  },
  where(cond, a, b, out) {
    if (cond.dtype !== 'bool' && cond.dtype !== 'uint8') throw new Error(`cuda where: cond has dtype ${cond.dtype} (expected bool or uint8)`);
    if (a.dtype !== out.dtype || b.dtype !== out.dtype) throw new Error(`cuda where: a, b and out dtypes differ (${a.dtype}, ${b.dtype}, ${out.dtype})`);
    for (const [v, name] of [[cond, 'cond'], [a, 'a'], [b, 'b']] as const) requireSameShape('where', v, name, out, 'out');
    requireContiguous('where', out, 'out');
    const n = out.layout.numel;
    if (n === 0) return;
    const c = collapse(out.layout.shape, [cond.layout.strides, a.layout.strides, b.layout.strides]);
    const p = newParams().view_(cond, 'cond').strided(c.shape, c.strides[0]).view_(a, 'a').strided(c.shape, c.strides[1])
      .view_(b, 'b').strided(c.shape, c.strides[2]).view_(out, 'out').i64(n);
    launch(cudaKernel('elementwise', `where_b${dtypeBytes(out.dtype)}`), p, { grid: gridFor(n), block: 256 });
  },
};
