// fill, arange and random on the GPU (native/cuda/kernels/creation.cu).
import { isFloat } from '../../../tensor/dtype.js';
import { TWO_POW_32 } from '../../../tensor/rng.js';
import type { Kernels } from '../../kernels.js';
import { requireContiguous } from '../checks.js';
import { SUFFIX } from '../dtypes.js';
import { collapse, gridFor, launch, newParams } from '../launch.js';
import { cudaKernel } from '../modules.js';

export const creationKernels: Pick<Kernels, 'fill' | 'arange' | 'random'> = {
  fill(out, value) {
    const n = out.layout.numel;
    if (n === 0) return;
    const c = collapse(out.layout.shape, [out.layout.strides]);
    const p = newParams().view_(out, 'out').strided(c.shape, c.strides[0]).i64(n).f64(value);
    launch(cudaKernel('creation', `fill_${SUFFIX[out.dtype]}`), p, { grid: gridFor(n), block: 256 });
  },
  arange(out, start, step) {
    requireContiguous('arange', out, 'out');
    const n = out.layout.numel;
    if (n === 0) return;
    const p = newParams().view_(out, 'out').i64(n).f64(start).f64(step);
    launch(cudaKernel('creation', `arange_${SUFFIX[out.dtype]}`), p, { grid: gridFor(n), block: 256 });
  },
  random(out, dist, seed, counter) {
    requireContiguous('random', out, 'out');
    if (!isFloat(out.dtype)) throw new Error(`cuda random: out has dtype ${out.dtype} (expected a float dtype)`);
    const n = out.layout.numel;
    if (n === 0) return;
    const p = newParams().view_(out, 'out').i64(n).i32(dist === 'normal' ? 1 : 0)
      .u32(seed % TWO_POW_32).u32(Math.floor(seed / TWO_POW_32)).i64(counter);
    launch(cudaKernel('creation', `random_${SUFFIX[out.dtype]}`), p, { grid: gridFor(n), block: 256 });
  },
};
