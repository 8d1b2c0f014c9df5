// reduce and argReduce on the GPU (native/cuda/kernels/reduce.cu): x's dims are split into the
// kept group (outputs) and the reduced group, each collapsed to as few dims as possible.
import type { DType } from '../../../tensor/dtype.js';
import type { Kernels, View } from '../../kernels.js';
import { dims, requireContiguous } from '../checks.js';
import { cudaContext } from '../context.js';
import { SUFFIX } from '../dtypes.js';
import { collapse, launch, newParams } from '../launch.js';
import { cudaKernel } from '../modules.js';
import { scratchStorage } from '../storage.js';

const OPS = { sum: 0, max: 1, min: 2 } as const;
const INT_ACC = new Set<DType>(['int32', 'int64', 'int8', 'uint8', 'bool']);
// sums of float32, float64 and int64 as the CPU kernel (the op layer sums integers as int64), and of
// bfloat16/float16 (Backend.halfElementwise): accumulated in double, rounded to float and then to the
// half type, as the float32 sum of the upcast input cast back; max/min of any dtype
const SUM_DTYPES = new Set<DType>(['float32', 'float64', 'int64', 'bfloat16', 'float16']);
const EXTREME_DTYPES = new Set<DType>(['float32', 'float64', 'float16', 'bfloat16', 'int32', 'int64', 'int8', 'uint8', 'bool']);
const suffix = (d: DType): string => (d === 'bool' ? 'u8' : SUFFIX[d]);

function split(x: View, reduced: (d: number) => boolean) {
  const { shape, strides } = x.layout;
  const dims = shape.map((_, d) => d);
  const kd = dims.filter((d) => !reduced(d));
  const rd = dims.filter((d) => reduced(d));
  const kept = collapse(kd.map((d) => shape[d]), [kd.map((d) => strides[d])]);
  const red = collapse(rd.map((d) => shape[d]), [rd.map((d) => strides[d])]);
  return {
    kept: { shape: kept.shape, strides: kept.strides[0] },
    red: { shape: red.shape, strides: red.strides[0] },
    R: rd.reduce((p, d) => p * shape[d], 1),
  };
}

export const reduceKernels: Pick<Kernels, 'reduce' | 'argReduce'> = {
  reduce(op, x, out) {
    if (out.dtype !== x.dtype) throw new Error(`cuda reduce: out dtype ${out.dtype} differs from x dtype ${x.dtype}`);
    const xs = x.layout.shape;
    const os = out.layout.shape;
    if (os.length !== xs.length) throw new Error(`cuda reduce: out ${dims(os)} must have the rank of x ${dims(xs)}`);
    if (os.some((s, d) => s !== 1 && s !== xs[d])) throw new Error(`cuda reduce: out ${dims(os)} is not a keepdim reduction of x ${dims(xs)}`);
    requireContiguous('reduce', out, 'out');
    if (!(op === 'sum' ? SUM_DTYPES : EXTREME_DTYPES).has(x.dtype)) throw new Error(`cuda reduce: ${op} does not support dtype ${x.dtype}`);
    const nout = out.layout.numel;
    if (nout === 0) return;
    if (x.layout.numel === 0 && op !== 'sum') throw new Error(`cuda reduce: ${op} of an empty dim of ${dims(xs)}`);
    const { kept, red, R } = split(x, (d) => os[d] === 1 && xs[d] !== 1);
    const ctx = cudaContext();
    const sfx = suffix(x.dtype);
    const innerReduced = red.strides.length > 0 && red.strides[red.strides.length - 1] === 1;
    const fewOutputs = nout < ctx.device.smCount * 2;
    // a block of 256 threads for under 64 values leaves most of them idle (and pays its barriers per
    // output): short rows take a thread per output too, even where their values are adjacent
    if ((!innerReduced || R < 64) && !fewOutputs) {
      const p = newParams().i32(OPS[op]).view_(x, 'x').strided(kept.shape, kept.strides).strided(red.shape, red.strides)
        .i64(R).i64(nout).view_(out, 'out');
      launch(cudaKernel('reduce', `reduce_cols_${sfx}`), p, { grid: Math.min(Math.ceil(nout / 256), ctx.device.smCount * 16), block: 256 });
      return;
    }
    const splits = fewOutputs && R > 8192 ? Math.min(1024, Math.ceil(R / 4096), Math.ceil((ctx.device.smCount * 8) / nout)) : 1;
    const partial = splits > 1 ? scratchStorage(ctx.addon, INT_ACC.has(x.dtype) ? 'int64' : 'float64', nout * splits) : null;
    try {
      const ptr = partial?.ptr ?? 0;
      const p = newParams().i32(OPS[op]).view_(x, 'x').strided(kept.shape, kept.strides).strided(red.shape, red.strides)
        .i64(R).i64(nout).i32(splits).view_(out, 'out').ptr(ptr);
      launch(cudaKernel('reduce', `reduce_rows_${sfx}`), p, { grid: [Math.min(nout, 65535), splits, 1], block: 256 });
      if (partial) {
        const q = newParams().i32(OPS[op]).ptr(ptr).i32(splits).view_(out, 'out').i64(nout);
        launch(cudaKernel('reduce', `reduce_finish_${sfx}`), q, { grid: Math.min(Math.ceil(nout / 256), 1024), block: 256 });
      }
    } finally {
      partial?.release();
    }
  },
  argReduce(op, x, dim, out) {
    const xs = x.layout.shape;
    if (dim < 0 || dim >= xs.length) throw new Error(`cuda arg_reduce: ${op} dim ${dim} out of range for x ${dims(xs)}`);
    if (out.dtype !== 'int64') throw new Error(`cuda arg_reduce: out has dtype ${out.dtype} (expected int64)`);
    requireContiguous('arg_reduce', out, 'out');
    const os = out.layout.shape;
    if (os.length !== xs.length || os.some((s, d) => s !== (d === dim ? 1 : xs[d])))
      throw new Error(`cuda arg_reduce: ${op} out ${dims(os)} does not match x ${dims(xs)} with dim ${dim} reduced`);
    const nout = out.layout.numel;
    const R = xs[dim];
    if (nout === 0) return;
    if (R === 0) throw new Error(`cuda arg_reduce: ${op} over an empty dim of ${dims(xs)}`);
    const { kept } = split(x, (d) => d === dim);
    const threads = Math.min(256, Math.ceil(R / 32) * 32);
    const p = newParams().i32(op === 'argmin' ? 1 : 0).view_(x, 'x').strided(kept.shape, kept.strides).i64(x.layout.strides[dim])
      .i64(R).i64(nout).view_(out, 'out');
    launch(cudaKernel('reduce', `arg_reduce_${suffix(x.dtype)}`), p, { grid: Math.min(nout, 65535), block: threads });
  },
};
