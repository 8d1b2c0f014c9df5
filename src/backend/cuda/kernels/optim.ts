// The fused AdamW step on the GPU (native/cuda/kernels/optim.cu): param, exp_avg and exp_avg_sq
// updated in place in one pass, checked as native/optim.cc checks them (contiguous float32, one size).
import type { Kernels, View } from '../../kernels.js';
import { dims } from '../checks.js';
import { gridFor, launch, newParams } from '../launch.js';
import { cudaKernel } from '../modules.js';

function checkSame(v: View, like: View, what: string): void {
  if (v.dtype !== 'float32' || !v.layout.isContiguous() || v.layout.numel !== like.layout.numel)
    throw new Error(`cuda adamw: ${what} must be a contiguous float32 tensor of ${like.layout.numel} elements, got ${v.dtype} ${dims(v.layout.shape)}`);
}

export const optimKernels: Pick<Kernels, 'adamw'> = {
  adamw(param, grad, expAvg, expAvgSq, s) {
    checkSame(param, param, 'param');
    checkSame(grad, param, 'grad');
    checkSame(expAvg, param, 'exp_avg');
    checkSame(expAvgSq, param, 'exp_avg_sq');
    const n = param.layout.numel;
    if (n === 0) return;
    const p = newParams().view_(param, 'param').view_(grad, 'grad').view_(expAvg, 'exp_avg').view_(expAvgSq, 'exp_avg_sq').i64(n)
      .f32(s.lr).f32(s.beta1).f32(s.beta2).f32(s.eps).f32(s.weightDecay).f32(s.bc1).f32(s.bc2);
    launch(cudaKernel('optim', 'adamw_f32'), p, { grid: gridFor(n), block: 256 });
  },
};
