// The reference backend: plain TypeScript, float64 accumulation. Slow and obviously right;
// every native kernel and every backward formula is tested against it.
import { type DType, type TypedArray, assertArrayType, makeArray } from '../../tensor/dtype.js';
import type { MemoryTag } from '../../tensor/memory.js';
import type { Storage } from '../../tensor/storage.js';
import type { Backend, Kernels } from '../kernels.js';
import { attention, attentionBackward } from './attention.js';
import { arange, binary, copy, fill, random, unary, unaryGrad, where } from './elementwise.js';
import { gather, indexAdd, indexSelect, matmul, moeCombine, moeCombineBackward, scatterAdd } from './linalg.js';
import * as nn from './nn.js';
import { argReduce, reduce } from './reduce.js';
import { adamw, sumSquares } from './optim.js';
import { quantLinear, quantLinearBackward } from './quant.js';
import { pagedAttention, pagedWrite } from './paged.js';
import { spectral } from './spectral.js';
import { sparseAttention } from './block_sparse_attention.js';
import { encoder } from './encoder.js';
import { RefStorage } from './storage.js';
import { readFully } from '../read_file.js';

const kernels: Kernels = {
  fill, arange, random, copy, unary, unaryGrad, binary, where, reduce, argReduce, matmul,
  gather, scatterAdd, indexSelect, indexAdd, moeCombine, moeCombineBackward,
  softmax: nn.softmax, softmaxBackward: nn.softmaxBackward,
  glu: nn.glu, gluBackward: nn.gluBackward,
  rmsNorm: nn.rmsNorm, rmsNormBackward: nn.rmsNormBackward,
  layerNorm: nn.layerNorm, layerNormBackward: nn.layerNormBackward,
  crossEntropy: nn.crossEntropy, crossEntropyBackward: nn.crossEntropyBackward,
  rope: nn.rope, attention, attentionBackward, quantLinear, quantLinearBackward, adamw, sumSquares,
};

export const refBackend: Backend = {
  name: 'ref',
  alloc(dtype: DType, numel: number, tag: MemoryTag): Storage {
    return new RefStorage(dtype, makeArray(dtype, numel), tag);
  },
  fromArray(dtype: DType, data: TypedArray, tag: MemoryTag): Storage {
    assertArrayType(dtype, data);
    return new RefStorage(dtype, data.slice(), tag);
  },
  read(storage: Storage, offset: number, count: number): TypedArray {
    if (!(storage instanceof RefStorage)) throw new Error(`ref backend cannot read a '${storage.backendName}' storage`);
    return storage.array.slice(offset, offset + count);
  },
  readFile(storage: Storage, byteOffset: number, fd: number, position: number, bytes: number): void {
    if (!(storage instanceof RefStorage)) throw new Error(`ref backend cannot read a file into a '${storage.backendName}' storage`);
    const a = storage.array;
    if (byteOffset < 0 || bytes < 0 || byteOffset + bytes > a.byteLength)
      throw new Error(`ref backend readFile: range [${byteOffset}, +${bytes}) outside storage of ${a.byteLength} bytes`);
    readFully(fd, new Uint8Array(a.buffer, a.byteOffset + byteOffset, bytes), position);
  },
  kernels,
  spectral,
  paged: { pagedWrite, pagedAttention },
  sparseAttention,
  encoder,
  halfMatmul: false,
  halfElementwise: false,
  halfAttention: false,
};
