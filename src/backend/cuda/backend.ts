// The CUDA backend: storage in device memory from the addon's caching allocator, and a kernel
// table whose entries launch the kernels of native/cuda/kernels/ (compiled by NVRTC at first
// use) or call cuBLASLt. Everything is queued on one stream; reads wait for it.
import { type DType, type TypedArray, assertArrayType, dtypeBytes, makeArray } from '../../tensor/dtype.js';
import { type MemoryTag, memory, registerAllocator } from '../../tensor/memory.js';
import type { Storage } from '../../tensor/storage.js';
import type { Backend, Kernels } from '../kernels.js';
import { type CudaContext, cudaContext } from './context.js';
import { raiseIndexErrors } from './index_errors.js';
import { attentionKernels } from './kernels/attention.js';
import { copyKernels } from './kernels/copy.js';
import { creationKernels } from './kernels/creation.js';
import { elementwiseKernels } from './kernels/elementwise.js';
import { indexingKernels } from './kernels/indexing.js';
import { matmulKernels } from './kernels/matmul.js';
import { nnKernels } from './kernels/nn.js';
import { optimKernels } from './kernels/optim.js';
import { pagedKernels } from './kernels/paged.js';
import { quantKernels } from './kernels/quant.js';
import { reduceKernels } from './kernels/reduce.js';
import { CudaStorage } from './storage.js';

const kernels: Kernels = {
  ...creationKernels,
  ...copyKernels,
  ...elementwiseKernels,
  ...reduceKernels,
  ...matmulKernels,
  ...indexingKernels,
  ...nnKernels,
  ...attentionKernels,
  ...quantKernels,
  ...optimKernels,
};

const mib = (b: number): string => `${(b / 2 ** 20).toFixed(1)} MiB`;

/** Device memory for a storage; out of memory says what was asked and what is held, by tag. */
function allocate(ctx: CudaContext, bytes: number, zero: boolean): number {
  try {
    return ctx.addon.cudaAlloc(bytes, zero);
  } catch (e) {
    const held = memory.stats('cuda').current;
    const tags = (['param', 'grad', 'optimizer', 'activation', 'other'] as const).map((t) => `${t} ${mib(held[t])}`).join(', ');
    throw new Error(`${(e as Error).message}; held by tag: ${tags}`);
  }
}

/** The CUDA backend; throws an Error saying what is missing when no device is usable. */
export function createCudaBackend(): Backend {
  const ctx = cudaContext();
  const { addon } = ctx;
  registerAllocator('cuda', {
    counts: () => {
      const m = addon.cudaMemStats();
      return { cached: m.reserved - m.allocated, reserved: m.reserved, osAllocs: m.driverAllocs };
    },
    emptyCache: () => addon.cudaEmptyCache(),
  });
  return {
    name: 'cuda',
    alloc(dtype: DType, numel: number, tag: MemoryTag, zero: boolean): Storage {
      return new CudaStorage(addon, allocate(ctx, numel * dtypeBytes(dtype), zero), dtype, numel, tag);
    },
    fromArray(dtype: DType, data: TypedArray, tag: MemoryTag): Storage {
      assertArrayType(dtype, data);
      const s = new CudaStorage(addon, allocate(ctx, data.byteLength, false), dtype, data.length, tag);
      addon.cudaWrite(s.ptr, 0, data);
      return s;
    },
    read(storage: Storage, offset: number, count: number): TypedArray {
      if (!(storage instanceof CudaStorage)) throw new Error(`cuda backend cannot read a '${storage.backendName}' storage`);
      if (storage.released) throw new Error('cuda backend: read of a disposed storage');
      const out = makeArray(storage.dtype, count);
      addon.cudaRead(storage.ptr, offset * dtypeBytes(storage.dtype), out);
      raiseIndexErrors(); // the read waited for the queue: report a bad index an indexing kernel met
      return out;
    },
    kernels,
    paged: pagedKernels,
    halfMatmul: true,
    halfElementwise: true,
    halfAttention: true,
  };
}
