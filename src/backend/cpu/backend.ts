// The native CPU backend: storage blocks live in C++ (64-byte aligned, from the caching allocator
// of native/alloc.cc, returned to it on release), and each kernel is one packed call into the
// addon (../addon.ts loads it).
import { type DType, type TypedArray, assertArrayType, dtypeBytes, makeArray } from '../../tensor/dtype.js';
import { type MemoryTag, registerAllocator } from '../../tensor/memory.js';
import { TWO_POW_32 } from '../../tensor/rng.js';
import { Storage } from '../../tensor/storage.js';
import {
  ARITH_OPS, type AttentionOpts, type Backend, COMPARE_OPS, GLU_ACTIVATIONS, type Kernels, type QuantWeight, REDUCE_OPS, biasProductShapes,
  type PagedKernels, type SpectralKernels, STFT_MODES, UNARY_OPS, type View,
} from '../kernels.js';
import { type NativeAddon, loadNative } from '../addon.js';
import { type NativeView, Packer } from './native.js';
import { activeRecording } from './graph.js';
import { packAdamW, packSumSquares } from './optim.js';
import { packMatmulList } from './matmul_list.js';
import { withHalfOperands } from './half_operands.js';
import { makeSparseAttention } from './sparse_attention.js';
import { makeEncoderKernels } from './encoder.js';
import { makeDecodeKernels, packQuantWeight } from './decode.js';

class CpuStorage extends Storage {
  readonly backendName = 'cpu';
  constructor(
    private readonly addon: NativeAddon,
    /** the addon's generation-checked handle: a stale one (after evict()) fails in the kernel */
    public handle: number,
    dtype: DType,
    numel: number,
    tag: MemoryTag,
    borrowed = false,
  ) {
    super(dtype, numel, tag, 'cpu', borrowed);
  }
  protected freeBlock(): void {
    this.addon.free(this.handle);
  }
  protected allocBlock(): void {
    this.handle = this.addon.alloc(this.bytes, false);
  }
}

/** The native block handle behind a CPU storage, or null for another backend's (src/dist passes it to the addon). */
export const cpuStorageHandle = (s: Storage): number | null => (s instanceof CpuStorage ? s.handle : null);

/**
 * A CPU storage over a block the addon made outside the allocator (a shared region of src/dist's
 * shm transport), freed as any block; `borrowed`: another process's part, not counted here.
 */
export const adoptCpuStorage = (addon: NativeAddon, handle: number, dtype: DType, numel: number, tag: MemoryTag, borrowed = false): Storage =>
  new CpuStorage(addon, handle, dtype, numel, tag, borrowed);

function nativeView(v: View): NativeView {
  if (!(v.storage instanceof CpuStorage)) throw new Error(`cpu kernel got a tensor on backend '${v.storage.backendName}'`);
  if (v.storage.evicted) throw new Error('cpu kernel got a tensor whose storage is evicted (restore() it first)');
  const { layout } = v;
  return { handle: v.storage.handle, dtype: v.dtype, offset: layout.offset, shape: layout.shape, strides: layout.strides };
}

const BINARY_OPS = [...ARITH_OPS, ...COMPARE_OPS];
const code = <T extends string>(list: readonly T[], op: T): number => list.indexOf(op);

function makeKernels(p: Packer): Kernels {
  const v = (x: View | null): NativeView | null => (x === null ? null : nativeView(x));
  const attnOpts = (o: AttentionOpts): Packer =>
    p.num(o.scale).num(o.causal ? 1 : 0).num(o.window).num(o.softcap).num(o.dropout)
      .num(o.seed % TWO_POW_32).num(Math.floor(o.seed / TWO_POW_32)).num(o.counter);
  const quantWeight = (w: QuantWeight): Packer => packQuantWeight(p, w, v);
  return {
    fill: (out, value) => p.view(v(out)).num(value).call('fill'),
    arange: (out, start, step) => p.view(v(out)).num(start).num(step).call('arange'),
    random: (out, dist, seed, counter) =>
      p.view(v(out)).num(dist === 'normal' ? 1 : 0).num(seed % TWO_POW_32).num(Math.floor(seed / TWO_POW_32)).num(counter).call('random'),
    copy: (src, dst) => p.view(v(src)).view(v(dst)).call('copy'),
    unary: (op, x, out, p0, p1) => p.num(code(UNARY_OPS, op)).view(v(x)).view(v(out)).num(p0).num(p1).call('unary'),
    unaryGrad: (op, x, dy, dx, p0, p1) =>
      p.num(code(UNARY_OPS, op)).view(v(x)).view(v(dy)).view(v(dx)).num(p0).num(p1).call('unary_grad'),
    binary: (op, a, b, out) => p.num(code(BINARY_OPS, op)).view(v(a)).view(v(b)).view(v(out)).call('binary'),
    where: (cond, a, b, out) => p.view(v(cond)).view(v(a)).view(v(b)).view(v(out)).call('where'),
    reduce: (op, x, out) => p.num(code(REDUCE_OPS, op)).view(v(x)).view(v(out)).call('reduce'),
    argReduce: (op, x, dim, out) => p.num(op === 'argmax' ? 0 : 1).view(v(x)).num(dim).view(v(out)).call('arg_reduce'),
    matmul: (a, b, out, acc) => p.view(v(a)).view(v(b)).view(v(out)).num(acc ? 1 : 0).call('matmul'),
    matmulList: (items, acc) => packMatmulList(p, nativeView, items, acc),
    // float32 2-d products only (the half GEMMs have no bias epilogue): else the op adds the bias itself
    matmulBias: (a, b, bias, out) => {
      if (!biasProductFits(a, b, bias, out)) return false;
      p.view(v(a)).view(v(b)).view(v(bias)).view(v(out)).call('matmul_bias');
      return true;
    },
    gather: (x, dim, index, out) => p.view(v(x)).num(dim).view(v(index)).view(v(out)).call('gather'),
    scatterAdd: (out, dim, index, src) => p.view(v(out)).num(dim).view(v(index)).view(v(src)).call('scatter_add'),
    indexSelect: (x, dim, index, out) => p.view(v(x)).num(dim).view(v(index)).view(v(out)).call('index_select'),
    indexAdd: (out, dim, index, src) => p.view(v(out)).num(dim).view(v(index)).view(v(src)).call('index_add'),
    moeCombine: (out, token, y, w) => p.view(v(out)).view(v(token)).view(v(y)).view(v(w)).call('moe_combine'),
    moeCombineBackward: (g, token, y, w, dy, dw) => p.view(v(g)).view(v(token)).view(v(y)).view(v(w)).view(v(dy)).view(v(dw)).call('moe_combine_backward'),
    softmax: (x, out, log) => p.view(v(x)).view(v(out)).num(log ? 1 : 0).call('softmax'),
    softmaxBackward: (y, dy, dx, log) => p.view(v(y)).view(v(dy)).view(v(dx)).num(log ? 1 : 0).call('softmax_backward'),
    glu: (act, gate, up, out) => p.num(code(GLU_ACTIVATIONS, act)).view(v(gate)).view(v(up)).view(v(out)).call('glu'),
    gluBackward: (act, gate, up, dy, dgate, dup) =>
      p.num(code(GLU_ACTIVATIONS, act)).view(v(gate)).view(v(up)).view(v(dy)).view(v(dgate)).view(v(dup)).call('glu_backward'),
    rmsNorm: (x, w, eps, offset, out, rstd) =>
      p.view(v(x)).view(v(w)).num(eps).num(offset).view(v(out)).view(v(rstd)).call('rms_norm'),
    rmsNormBackward: (x, w, offset, rstd, dy, dx, dw) =>
      p.view(v(x)).view(v(w)).num(offset).view(v(rstd)).view(v(dy)).view(v(dx)).view(v(dw)).call('rms_norm_backward'),
    layerNorm: (x, w, b, eps, out, mean, rstd) =>
      p.view(v(x)).view(v(w)).view(v(b)).num(eps).view(v(out)).view(v(mean)).view(v(rstd)).call('layer_norm'),
    layerNormBackward: (x, w, mean, rstd, dy, dx, dw, db) =>
      p.view(v(x)).view(v(w)).view(v(mean)).view(v(rstd)).view(v(dy)).view(v(dx)).view(v(dw)).view(v(db)).call('layer_norm_backward'),
    crossEntropy: (logits, target, o, loss, lse) =>
      p.view(v(logits)).view(v(target)).num(o.ignoreIndex).num(o.labelSmoothing).view(v(loss)).view(v(lse)).call('cross_entropy'),
    crossEntropyBackward: (logits, target, lse, dloss, o, dlogits) =>
      p.view(v(logits)).view(v(target)).view(v(lse)).view(v(dloss)).num(o.ignoreIndex).num(o.labelSmoothing)
        .view(v(dlogits)).call('cross_entropy_backward'),
    rope: (x, cos, sin, out, o) =>
      p.view(v(x)).view(v(cos)).view(v(sin)).view(v(out)).num(o.interleaved ? 1 : 0).num(o.inverse ? 1 : 0).call('rope'),
    attention: (q, k, vv, mask, o, out, lse) => {
      p.view(v(q)).view(v(k)).view(v(vv)).view(v(mask));
      attnOpts(o).view(v(out)).view(v(lse)).call('attention');
    },
    attentionBackward: (q, k, vv, mask, out, lse, dout, o, dq, dk, dv) => {
      p.view(v(q)).view(v(k)).view(v(vv)).view(v(mask)).view(v(out)).view(v(lse)).view(v(dout));
      attnOpts(o).view(v(dq)).view(v(dk)).view(v(dv)).call('attention_backward');
    },
    quantLinear: (x, w, y, int8Activations) => quantWeight(w).view(v(x)).view(v(y)).num(int8Activations ? 1 : 0).call('quant_linear'),
    quantLinearBackward: (dy, w, dx) => quantWeight(w).view(v(dy)).view(v(dx)).call('quant_linear_backward'),
    adamw: (tensors, s) => packAdamW(p, nativeView, tensors, s),
    sumSquares: (x, out) => packSumSquares(p, nativeView, x, out),
  };
}

// the order native/stft.cc reads
function makeSpectral(p: Packer): SpectralKernels {
  return {
    stft: (x, window, o, out) =>
      p.view(nativeView(x)).view(nativeView(window)).num(o.nFft).num(o.hop).num(o.pad).num(o.frames)
        .num(o.reflect ? 1 : 0).num(o.onesided ? 1 : 0).num(code(STFT_MODES, o.mode)).view(nativeView(out)).call('stft'),
    fft: (x, out) => p.view(nativeView(x)).view(nativeView(out)).call('fft'),
  };
}

// the order native/paged_attention.cc reads
function makePaged(p: Packer): PagedKernels {
  return {
    pagedWrite: (src, slots, pool) => p.view(nativeView(src)).view(nativeView(slots)).view(nativeView(pool)).call('paged_write'),
    pagedAttention: (q, k, v, table, seq, pos, o, out) =>
      p.view(nativeView(q)).view(nativeView(k)).view(nativeView(v)).view(nativeView(table)).view(nativeView(seq)).view(nativeView(pos))
        .num(o.scale).num(o.window).num(o.softcap).num(o.blockSize).view(nativeView(out)).call('paged_attention'),
  };
}

/**
 * Whether bfloat16 attention goes to the kernel as it is (its tile products on the half GEMM) rather
 * than widened to float32 first: where the CPU multiplies bf16 (AMX or AVX-512 BF16, as KESTREL_SIMD
 * leaves them). Elsewhere the half GEMM would widen every tile anyway, and widening q, k, v once is
 * faster (bench/attention_bf16.ts: its convert column). Asked per call: where attention widens, a
 * KESTREL_BF16_GEMM naming no path or one this CPU lacks is still the error the kernel (and a bf16
 * matmul) gives, checked once per value of the variable.
 */
function bf16Attention(addon: NonNullable<ReturnType<typeof loadNative>>): () => boolean {
  const f = addon.info();
  if (f.amxBf16 || f.avx512bf16) return () => true; // native/attention.cc reads the variable per call
  let valid: string | undefined = ''; // the last value found to name a path
  return () => {
    const forced = process.env.KESTREL_BF16_GEMM;
    if (forced !== valid) {
      const path = addon.info().bf16Gemm;
      if (path.startsWith('error: ')) throw new Error(`attention: ${path.slice('error: '.length)}`);
      valid = forced;
    }
    return false;
  };
}

/** The CPU backend, or null when the addon is not built. */
export function createCpuBackend(): Backend | null {
  const addon = loadNative();
  if (!addon) return null;
  const packer = new Packer(addon);
  registerAllocator('cpu', {
    counts: () => {
      const a = addon.allocStats();
      return { cached: a.cached, reserved: a.inUse + a.cached, osAllocs: a.osAllocs };
    },
    emptyCache: () => addon.allocEmptyCache(),
  });
  // pool threads started and their packing buffers faulted in now, not inside the first matmuls
  addon.warmup();
  // while a CPU graph records (graph.ts) blocks come from its pool, and zeroing is a recorded fill
  const alloc = (dtype: DType, numel: number, tag: MemoryTag, zero: boolean): CpuStorage => {
    const rec = activeRecording();
    if (!rec) return new CpuStorage(addon, addon.alloc(numel * dtypeBytes(dtype), zero), dtype, numel, tag);
    const s = rec.alloc(dtype, numel, () => new CpuStorage(addon, addon.alloc(numel * dtypeBytes(dtype), false), dtype, numel, tag)) as CpuStorage;
    if (zero) packer.view({ handle: s.handle, dtype, offset: 0, shape: [numel], strides: [1] }).num(0).call('fill');
    return s;
  };
  return {
    name: 'cpu',
    alloc,
    fromArray(dtype: DType, data: TypedArray, tag: MemoryTag): Storage {
      assertArrayType(dtype, data);
      const make = (): CpuStorage => new CpuStorage(addon, addon.alloc(data.byteLength, false), dtype, data.length, tag);
      const rec = activeRecording();
      const s = (rec ? rec.upload(dtype, data, make) : make()) as CpuStorage;
      addon.write(s.handle, 0, data);
      return s;
    },
    read(storage: Storage, offset: number, count: number): TypedArray {
      if (!(storage instanceof CpuStorage)) throw new Error(`cpu backend cannot read a '${storage.backendName}' storage`);
      if (storage.released) throw new Error('cpu backend: read of a disposed storage');
      if (storage.evicted) throw new Error('cpu backend: read of an evicted storage (restore() it first)');
      activeRecording()?.fail('the step reads a value back from the backend');
      const out = makeArray(storage.dtype, count);
      addon.read(storage.handle, offset * dtypeBytes(storage.dtype), out);
      return out;
    },
    readFile(storage: Storage, byteOffset: number, fd: number, position: number, bytes: number): void {
      if (!(storage instanceof CpuStorage)) throw new Error(`cpu backend cannot read a file into a '${storage.backendName}' storage`);
      if (storage.released) throw new Error('cpu backend: readFile into a disposed storage');
      if (storage.evicted) throw new Error('cpu backend: readFile into an evicted storage (restore() it first)');
      addon.readFile(storage.handle, byteOffset, fd, position, bytes);
    },
    kernels: withHalfOperands(makeKernels(packer), (n) => alloc('float32', n, 'activation', false), bf16Attention(addon)),
    spectral: makeSpectral(packer),
    paged: makePaged(packer),
    sparseAttention: makeSparseAttention(packer, nativeView),
    encoder: makeEncoderKernels(packer, (x) => (x === null ? null : nativeView(x))),
    decode: makeDecodeKernels(packer, (x) => (x === null ? null : nativeView(x))),
    // matmul and quantLinear take bf16/fp16 operands (native/gemm_half.h: AMX, AVX-512 BF16 or
    // converting while packing; float32 accumulation); the elementwise, norm, rope, softmax and
    // attention kernels through float32 scratch (half_operands.ts), except bf16 attention where the
    // CPU multiplies bf16 (bf16Attention)
    halfMatmul: true,
    // a float32 weight under autocast is rounded while packed (hgemm_on_float_b)
    halfMatmulFloatB: true,
    halfElementwise: true,
    halfAttention: true,
    attentionStridedKv: true,
  };
}

/** Operands native matmul_bias takes: float32, a and b row-major or transposed (biasProductShapes for the rest). */
function biasProductFits(a: View, b: View, bias: View, out: View): boolean {
  const inner = (t: View): boolean => {
    const [r, c] = t.layout.shape, [rs, cs] = t.layout.strides;
    return cs === 1 || rs === 1 || r === 1 || c === 1;
  };
  return [a, b, bias, out].every((t) => t.dtype === 'float32') && biasProductShapes(a, b, bias, out) && inner(a) && inner(b);
}
