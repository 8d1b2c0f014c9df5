// copy with dtype conversion between strided views (native/cuda/kernels/copy.cu); contiguous
// same-dtype copies are one device memcpy.
import { type DType, dtypeBytes } from '../../../tensor/dtype.js';
import type { Kernels } from '../../kernels.js';
import { DTYPE_CODE } from '../../cpu/native.js';
import { requireSameShape } from '../checks.js';
import { cudaContext } from '../context.js';
import { collapse, devicePointer, gridFor, launch, newParams } from '../launch.js';
import { cudaKernel } from '../modules.js';
import type { CudaStorage } from '../storage.js';

const DIRECT = new Set(['float32>bfloat16', 'bfloat16>float32', 'float32>float16', 'float16>float32']);
const SHORT: Partial<Record<DType, string>> = { float32: 'f32', bfloat16: 'bf16', float16: 'f16' };

export const copyKernels: Pick<Kernels, 'copy'> = {
  copy(src, dst) {
    const shape = dst.layout.shape;
    requireSameShape('copy', src, 'src', dst, 'dst');
    const n = dst.layout.numel;
    if (n === 0) return;
    const sp = devicePointer(src, 'src');
    const dp = devicePointer(dst, 'dst');
    if (src.dtype === dst.dtype && src.layout.isContiguous() && dst.layout.isContiguous()) {
      const es = dtypeBytes(src.dtype);
      const [ss, ds] = [src.storage as CudaStorage, dst.storage as CudaStorage];
      cudaContext().addon.cudaCopy(ds.ptr, dp - ds.ptr, ss.ptr, sp - ss.ptr, n * es);
      return;
    }
    const c = collapse(shape, [src.layout.strides, dst.layout.strides]);
    const p = newParams();
    let fn: string;
    if (src.dtype === dst.dtype) {
      fn = `move_b${dtypeBytes(src.dtype)}`;
      p.ptr(sp).strided(c.shape, c.strides[0]).ptr(dp).strided(c.shape, c.strides[1]);
    } else if (DIRECT.has(`${src.dtype}>${dst.dtype}`)) {
      fn = `cast_${SHORT[src.dtype]}_${SHORT[dst.dtype]}`;
      p.ptr(sp).strided(c.shape, c.strides[0]).ptr(dp).strided(c.shape, c.strides[1]);
    } else {
      fn = 'cast_any';
      p.ptr(sp).i32(DTYPE_CODE[src.dtype]).strided(c.shape, c.strides[0]).ptr(dp).i32(DTYPE_CODE[dst.dtype]).strided(c.shape, c.strides[1]);
    }
    p.i64(n);
    launch(cudaKernel('copy', fn), p, { grid: gridFor(n), block: 256 });
  },
};
