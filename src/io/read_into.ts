// Reading one safetensors tensor into a tensor that already exists, in the destination's dtype,
// without a whole-tensor intermediate: when the file holds the destination's dtype the bytes go
// straight from the file into its storage (one read(2) copy, Backend.readFile); otherwise they pass
// through a small staging block, converted by the copy kernel (the conversion every cast uses),
// a few MiB at a time. Loading a model this way holds the model plus one staging block at most.
import { backendOf, withLayout } from '../backend/index.js';
import type { Backend } from '../backend/kernels.js';
import { readFully } from '../backend/read_file.js';
import { tensor } from '../ops/creation.js';
import { empty } from '../ops/dispatch.js';
import { assertArrayType, dtypeBytes, makeArray, type TypedArray } from '../tensor/dtype.js';
import { Layout, numel, shapeStr } from '../tensor/layout.js';
import type { Tensor } from '../tensor/tensor.js';
import type { TensorInfo } from './safetensors.js';
import { ST_DTYPES, decodeWidened, isVerbatim } from './safetensors_dtypes.js';

/** Bytes of the file read per staging step when the tensor must be converted or staged. */
export const STAGING_BYTES = 4 << 20;

/**
 * Reads the tensor `info` describes from fd into dst (any dtype of the same kind: the copy kernel
 * converts; dst contiguous with the same element count). `where` opens every error message.
 * @example readTensorInto(fd, file.info('lm_head.weight'), weight, 'model.safetensors: tensor \'lm_head.weight\'')
 */
export function readTensorInto(fd: number, info: TensorInfo, dst: Tensor, where: string): void {
  const n = numel(info.shape);
  dst.assertLive('readInto');
  if (dst.numel !== n) throw new Error(`${where}: ${shapeStr(info.shape)} has ${n} elements, the destination ${shapeStr(dst.shape)} ${dst.numel}`);
  if (!dst.isContiguous()) throw new Error(`${where}: the destination ${shapeStr(dst.shape)} must be contiguous`);
  const backend = backendOf(dst);
  const st = ST_DTYPES[info.fileDtype];
  const verbatim = isVerbatim(info.fileDtype);
  try {
    if (verbatim && st.dtype === dst.dtype && backend.readFile) {
      backend.readFile(dst.storage, dst.layout.offset * dtypeBytes(dst.dtype), fd, info.begin, info.end - info.begin);
      return;
    }
    const per = Math.max(1, Math.floor(STAGING_BYTES / st.bytes));
    for (let start = 0; start < n; start += per) {
      const m = Math.min(per, n - start);
      const staged = stage(backend, fd, info, start, m);
      try {
        backend.kernels.copy(staged, withLayout(dst, new Layout([m], [1], dst.layout.offset + start)));
      } finally {
        staged.dispose();
      }
    }
  } catch (e) {
    throw new Error(`${where}: ${(e as Error).message}`);
  }
}

/** Elements [start, start + m) of the tensor as a 1-d tensor of its load dtype on backend. */
function stage(backend: Backend, fd: number, info: TensorInfo, start: number, m: number): Tensor {
  const st = ST_DTYPES[info.fileDtype];
  const position = info.begin + start * st.bytes;
  if (isVerbatim(info.fileDtype) && backend.readFile) {
    const t = empty([m], st.dtype, { backend, tag: 'other' });
    try {
      backend.readFile(t.storage, 0, fd, position, m * st.bytes);
    } catch (e) {
      t.dispose();
      throw e;
    }
    return t;
  }
  return tensor(readArray(fd, info, { start, count: m }), { dtype: st.dtype, shape: [m], backend });
}

export interface ReadArrayOptions {
  /** first element (default 0) */
  start?: number;
  /** elements to read (default: the rest) */
  count?: number;
  /**
   * read into this array (the load dtype's typed array of exactly `count` elements; verbatim dtypes
   * only) instead of a new one, so a caller can reuse one buffer across tensors
   */
  out?: TypedArray;
}

/**
 * Elements [start, start + count) in the load dtype's storage representation: read straight into
 * the typed array when the bytes are verbatim, decoded otherwise.
 * @example const absmax = readArray(fd, file.info('x.weight.absmax')) as Float32Array
 */
export function readArray(fd: number, info: TensorInfo, opts: ReadArrayOptions = {}): TypedArray {
  const st = ST_DTYPES[info.fileDtype];
  const start = opts.start ?? 0;
  const m = opts.count ?? numel(info.shape) - start;
  const position = info.begin + start * st.bytes;
  if (!isVerbatim(info.fileDtype)) {
    if (opts.out) throw new Error(`readArray: ${info.fileDtype} is decoded into a new array, not into 'out'`);
    const bytes = new Uint8Array(m * st.bytes);
    readFully(fd, bytes, position);
    return decodeWidened(info.fileDtype, bytes);
  }
  const out = opts.out ?? makeArray(st.dtype, m);
  assertArrayType(st.dtype, out);
  if (out.length !== m) throw new Error(`readArray: 'out' holds ${out.length} elements, reading ${m}`);
  readFully(fd, new Uint8Array(out.buffer, out.byteOffset, out.byteLength), position);
  return out;
}
