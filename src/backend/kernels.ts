// The kernel table every backend implements. The op-kind lists below are the single source:
// adding a unary op name makes the compiler ask every backend (and the op layer's derivative
// table) for it. Kernels write into preallocated outputs; accumulation into .grad is autograd's.
import type { DType, TypedArray } from '../tensor/dtype.js';
import type { MemoryTag } from '../tensor/memory.js';
import type { Layout } from '../tensor/layout.js';
import type { RandomDist } from '../tensor/rng.js';
import type { Storage } from '../tensor/storage.js';

/** What a kernel sees of a tensor: its storage and layout (a Tensor is one). */
export interface View {
  readonly storage: Storage;
  readonly layout: Layout;
  readonly dtype: DType;
}

/** The same storage seen through another layout (a kernel argument; no autograd, no refcount). */
export const withLayout = (t: View, layout: Layout): View => ({ storage: t.storage, layout, dtype: t.dtype });

/** matmulBias's shapes: a [M, K], b [K, N], out [M, N] contiguous, bias [N] contiguous (each backend adds its dtypes and operand layouts). */
export function biasProductShapes(a: View, b: View, bias: View, out: View): boolean {
  const [as, bs, os, vs] = [a.layout.shape, b.layout.shape, out.layout.shape, bias.layout.shape];
  return as.length === 2 && bs.length === 2 && os.length === 2 && vs.length === 1 && as[0] === os[0] && as[1] === bs[0] &&
    bs[1] === os[1] && vs[0] === os[1] && out.layout.isContiguous() && bias.layout.isContiguous();
}

/** Elementwise functions of one input; p0/p1 are the scalar parameters of pow/clamp. */
export const UNARY_OPS = [
  'neg', 'exp', 'log', 'sqrt', 'rsqrt', 'abs', 'tanh', 'sigmoid', 'relu', 'silu',
  'gelu_tanh', 'gelu_erf', 'sin', 'cos', 'floor', 'sign', 'reciprocal', 'pow_scalar', 'clamp',
] as const;
export type UnaryOp = (typeof UNARY_OPS)[number];

export const ARITH_OPS = ['add', 'sub', 'mul', 'div', 'pow', 'maximum', 'minimum'] as const;
export const COMPARE_OPS = ['eq', 'ne', 'lt', 'le', 'gt', 'ge'] as const;
export type ArithOp = (typeof ARITH_OPS)[number];
export type CompareOp = (typeof COMPARE_OPS)[number];
export type BinaryOp = ArithOp | CompareOp;

export const REDUCE_OPS = ['sum', 'max', 'min'] as const;
export type ReduceOp = (typeof REDUCE_OPS)[number];
export type ArgReduceOp = 'argmax' | 'argmin';

/** The gated-MLP activations (DecoderConfig.activation as unary op names). */
export const GLU_ACTIVATIONS = ['silu', 'gelu_tanh', 'gelu_erf'] as const;
export type GluActivation = (typeof GLU_ACTIVATIONS)[number];

export interface CrossEntropyOpts {
  ignoreIndex: number;
  labelSmoothing: number;
}

export interface RopeOpts {
  /** pairs (2i, 2i+1) instead of HF's halves (i, i + hd/2) */
  interleaved: boolean;
  /** rotate by -theta (the backward pass) */
  inverse: boolean;
}

export interface AttentionOpts {
  scale: number;
  causal: boolean;
  /** keys j with j <= i' - window are masked (i' = i + Tk - Tq); 0 = no window */
  window: number;
  /** tanh soft-capping of the scores (Gemma 2); 0 = off */
  softcap: number;
  /** dropout probability on the attention weights; 0 = off */
  dropout: number;
  /** Philox seed and counter for the dropout mask (element (b,h,i,j) uses uniform index ((b*H+h)*Tq+i)*Tk+j) */
  seed: number;
  counter: number;
}

/**
 * A quantized weight W [N, K] (PyTorch's [out, in]) as the quantized matmul kernels read it;
 * src/quant/ builds these (four_bit.ts, int8.ts, double_quant.ts document the formats).
 */
export interface QuantWeight {
  /**
   * '4bit': codes into a 16-entry table (NF4/FP4/q4); 'int8': W[n,k] = q[n,k] * scales[n] / 127 (LLM.int8's SCB);
   * 'bf16': plain bfloat16 values (decode-time weights; CPU and ref only)
   */
  kind: '4bit' | 'int8' | 'bf16';
  N: number;
  K: number;
  /** 4-bit: uint8 [ceil(N*K/2)], two codes per byte, the first in the high nibble; int8: int8 [N*K]; bf16: bfloat16 [N*K] */
  data: View;
  /** 4-bit: the float32 code table [16]; null for int8 */
  code: View | null;
  /** 4-bit: elements of the flattened weight per absmax (a power of two); unused for int8 */
  blockSize: number;
  /** 4-bit: float32 absmax per block (uint8 codes when nested); int8: float32 SCB per row [N]; bf16: unused (the data again) */
  scales: View;
  /** double quantization: absmax[b] = code[scales[b]] * absmax[floor(b / blockSize)] + offset */
  nested: { code: View; absmax: View; offset: number; blockSize: number } | null;
}

export interface Kernels {
  fill(out: View, value: number): void;
  /** out[i] = start + i * step over contiguous out */
  arange(out: View, start: number, step: number): void;
  /** contiguous out, element i = draw i of (seed, counter) as tensor/rng.ts defines */
  random(out: View, dist: RandomDist, seed: number, counter: number): void;
  /** dst[...] = src[...] elementwise with dtype conversion; both strided, same shape */
  copy(src: View, dst: View): void;

  /**
   * out = f(x); x strided (f32/f64; f16/bf16 on a halfElementwise backend), out contiguous of the
   * same shape and dtype
   */
  unary(op: UnaryOp, x: View, out: View, p0: number, p1: number): void;
  /** dx = dy * f'(x); all the same shape and dtype (half ones on a halfElementwise backend); dx contiguous */
  unaryGrad(op: UnaryOp, x: View, dy: View, dx: View, p0: number, p1: number): void;
  /**
   * out = a op b; a and b of one dtype, already expanded to out's shape (stride 0 broadcast); out
   * contiguous (bool for comparisons); f16/bf16 arithmetic and comparisons on a halfElementwise backend
   */
  binary(op: BinaryOp, a: View, b: View, out: View): void;
  /** out = cond ? a : b, all expanded to out's shape; any dtype */
  where(cond: View, a: View, b: View, out: View): void;
  /**
   * out has x's ndim with size 1 on the reduced dims (keepdim form), contiguous, x's dtype; a
   * halfElementwise backend also sums f16/bf16 (accumulating in float/double, rounded once)
   */
  reduce(op: ReduceOp, x: View, out: View): void;
  /** index of the max/min along dim (first on ties); out int64 in keepdim form */
  argReduce(op: ArgReduceOp, x: View, dim: number, out: View): void;

  /**
   * out = a @ b (+ out when accumulate); see native/gemm.h for the layout rules. On a backend with
   * halfMatmul, float16/bfloat16 a and b may write a float32 out (accumulated in float32 throughout).
   */
  matmul(a: View, b: View, out: View, accumulate: boolean): void;

  /**
   * Optional: out [M, N] = a [M, K] @ b [K, N] + bias [N] broadcast over the rows, the bias added
   * before out is rounded (a GEMM epilogue: no pass writing the bias into out first). bias has out's
   * dtype. Returns false, writing nothing, where this backend does not take these operands; the
   * caller then copies the bias into out and accumulates the product onto it (ops/fused/linear.ts).
   */
  matmulBias?(a: View, b: View, bias: View, out: View): boolean;

  /**
   * Optional: out_i = a_i @ b_i (+ out_i when accumulate) for a list of independent 2-d float32
   * products of different shapes, run as one parallel pass (the grouped GEMM of a mixture-of-experts
   * layer, one product per expert). Operands and dtypes as matmul's (a float32 b with a half a where
   * halfMatmulFloatB); outputs must not overlap. Where absent,
   * ops/fused/grouped_linear.ts calls matmul once per item.
   */
  matmulList?(items: readonly MatmulItem[], accumulate: boolean): void;

  /**
   * Optional: the weighted scatter ending a mixture-of-experts layer, out [N, D] (written whole) =
   * index_add(zeros, 0, token, y * w[:, None]) for y [S, D], token [S] int64, w [S] (float32/64,
   * contiguous). Where absent, ops/fused/moe_combine.ts runs that composite.
   */
  moeCombine?(out: View, token: View, y: View, w: View): void;
  /** Optional, with moeCombine: dy[s] = w[s] g[token[s]], dw[s] = <g[token[s]], y[s]> (null = not needed) */
  moeCombineBackward?(g: View, token: View, y: View, w: View, dy: View | null, dw: View | null): void;

  /** out[..i..] = x[..index[..i..]..] along dim (torch.gather); out contiguous */
  gather(x: View, dim: number, index: View, out: View): void;
  /** out[..index[..i..]..] += src[..i..] along dim (torch.scatter_add_), in place */
  scatterAdd(out: View, dim: number, index: View, src: View): void;
  /** out = x selected at index (1-d int) along dim */
  indexSelect(x: View, dim: number, index: View, out: View): void;
  /** out[index[i]] += src[i] along dim (torch.index_add_), in place */
  indexAdd(out: View, dim: number, index: View, src: View): void;

  // Fused kernels (src/ops/fused/): each equals a composite of the primitives above.
  // On a halfElementwise backend, the ones marked "half" also take f16/bf16 operands: loaded into
  // float32, computed as the float32 kernel computes, each stored value rounded once (= the float32
  // kernel on upcast inputs, cast back). Statistics (rstd, lse, mean) stay float32.
  /**
   * softmax or log-softmax over the last dim of contiguous x; out x's dtype (f32). Half: x f16/bf16
   * with out of x's dtype, or float32 (the probabilities a half backward recomputes)
   */
  softmax(x: View, out: View, log: boolean): void;
  /** dy/dx one dtype (f32); half: dy/dx f16/bf16 with y of their dtype or float32 */
  softmaxBackward(y: View, dy: View, dx: View, log: boolean): void;
  /** out = act(gate) * up; gate/up strided, same shape; out contiguous; all f32 (half: all one f16/bf16 dtype) */
  glu(act: GluActivation, gate: View, up: View, out: View): void;
  /**
   * dgate = dy * up * act'(gate), dup = dy * act(gate), act recomputed from gate; gate, up, dy strided,
   * dgate/dup contiguous (null = not needed); dtypes as glu's
   */
  gluBackward(act: GluActivation, gate: View, up: View, dy: View, dgate: View | null, dup: View | null): void;
  /**
   * y = x * rstd * (offset + w), rstd = 1/sqrt(mean(x^2) + eps) over the last dim; rstd [rows] float32;
   * x, weight, out one dtype (f32). Half: x/out f16/bf16 with the weight of x's dtype or float32
   */
  rmsNorm(x: View, weight: View | null, eps: number, offset: number, out: View, rstd: View): void;
  /**
   * dx may be dy itself (each element of dy is read before dx overwrites it); x, dy, dx one dtype,
   * weight and dweight another (half: as rmsNorm's x and weight), rstd float32
   */
  rmsNormBackward(x: View, weight: View | null, offset: number, rstd: View, dy: View, dx: View, dweight: View | null): void;
  layerNorm(x: View, weight: View | null, bias: View | null, eps: number, out: View, mean: View, rstd: View): void;
  layerNormBackward(
    x: View, weight: View | null, mean: View, rstd: View, dy: View, dx: View, dweight: View | null, dbias: View | null,
  ): void;
  /** per-row loss [N] and logsumexp [N] of logits [N, V] (f32) against int64 targets [N] */
  crossEntropy(logits: View, target: View, opts: CrossEntropyOpts, loss: View, lse: View): void;
  /** dlogits [N, V] given dloss [N]; dlogits may be logits itself (each logit is read before its gradient is written) */
  crossEntropyBackward(logits: View, target: View, lse: View, dloss: View, opts: CrossEntropyOpts, dlogits: View): void;
  /**
   * rotary embedding of x [B, H, T, hd] with cos/sin [B, T, hd/2]; out may be x itself (each pair is
   * read before it is written); all f32 (half: x/out f16/bf16, cos/sin float32)
   */
  rope(x: View, cos: View, sin: View, out: View, opts: RopeOpts): void;
  /**
   * flash-style attention: q [B,H,Tq,hd], k/v [B,Hkv,Tk,hd], additive mask broadcastable to [B,H,Tq,Tk].
   * On a backend that declares halfAttention, q/k/v may also be float16 or bfloat16 (all one dtype):
   * out, dout, dq, dk, dv then have that dtype while lse and the mask stay float32 (accumulation is float32).
   */
  attention(q: View, k: View, v: View, mask: View | null, opts: AttentionOpts, out: View, lse: View): void;
  attentionBackward(
    q: View, k: View, v: View, mask: View | null, out: View, lse: View, dout: View, opts: AttentionOpts,
    dq: View, dk: View, dv: View,
  ): void;

  /**
   * y [M, N] = x [M, K] Wᵀ; x has unit stride in its last dim (rows may be strided), y contiguous.
   * float32, or (halfMatmul backends) bf16/fp16 x and y with W decoded to their dtype.
   * int8Activations (inference prefill only): float32 x may be quantized to int8 per block of 32 (llama.cpp's
   * q8_0) for an integer product where the backend has one for W's format (CPU on AVX2: q4, and int8 up to
   * 127 rows); others ignore it.
   */
  quantLinear(x: View, w: QuantWeight, y: View, int8Activations?: boolean): void;
  /** dx [M, K] = dy [M, N] W (the input gradient of quantLinear; W gets none); dx contiguous */
  quantLinearBackward(dy: View, w: QuantWeight, dx: View): void;

  /**
   * fused AdamW update of every param, exp_avg and exp_avg_sq in place (each set contiguous float32
   * of one shape): one step of a parameter group, which a backend may run as one launch (cuda's
   * multi-tensor kernel) or one call per tensor
   */
  adamw(tensors: readonly AdamWTensors[], step: AdamWStep): void;

  /**
   * out (a float64 scalar) = sum(x²) of a contiguous float32 x, accumulated in float64 in an order that
   * does not depend on the thread count: the gradient-norm term read in one pass, with no squared
   * temporary (src/optim/clip.ts). Optional: without it the norm is sum(mul(g, g)) in float32.
   */
  sumSquares?(x: View, out: View): void;
}

/** What the stft kernel writes per (frequency, frame): complex pairs, |X|^2 or |X|. */
export const STFT_MODES = ['complex', 'power', 'magnitude'] as const;
export type StftMode = (typeof STFT_MODES)[number];

/**
 * One STFT call: frame t of row b reads padded samples [t hop - pad, t hop - pad + nFft) of x[b],
 * an index outside [0, L) reflecting (x[-i], x[2(L-1) - i]) or reading zero.
 */
export interface StftOpts {
  nFft: number;
  hop: number;
  /** samples of padding before the signal (frame 0 starts at -pad) */
  pad: number;
  frames: number;
  reflect: boolean;
  /** nFft/2 + 1 bins (real input's spectrum is conjugate-symmetric), else all nFft */
  onesided: boolean;
  mode: StftMode;
}

/**
 * Spectral kernels (src/audio/ features). Optional: a backend without them (cuda) has the features
 * computed on the CPU (src/audio/stft.ts moves the signal there and the result back). ref is a float64 direct DFT (the oracle); cpu runs FFT plans of any length
 * (native/fft.h) in float64 and rounds once.
 */
export interface SpectralKernels {
  /**
   * out [B, freq, frames, 2] (complex: real, imag) or [B, freq, frames] (power, magnitude) =
   * DFT over n of x[b][t hop - pad + n] * window[n]; x [B, L] and window [nFft] contiguous float32
   */
  stft(x: View, window: View, opts: StftOpts, out: View): void;
  /** out [B, n, 2] = the complex DFT of each row of x [B, n, 2] (real, imag pairs), float32 contiguous */
  fft(x: View, out: View): void;
}

/** Options of one paged-attention call (src/ops/paged.ts). */
export interface PagedAttentionOpts {
  scale: number;
  /** query at position p sees keys j with p - window < j <= p; 0 = no window */
  window: number;
  /** tanh soft-capping of the scores (Gemma 2); 0 = off */
  softcap: number;
  /** tokens per cache block */
  blockSize: number;
}

/**
 * Kernels over a paged KV cache (vLLM's PagedAttention layout): a pool of slots [S, Hkv, hd], slot
 * = block * blockSize + offset, and per sequence a table of the blocks holding its tokens in order.
 * Optional: a backend without them cannot serve with continuous batching (generate() keeps the
 * contiguous KVCache). Both take float32 pools and queries.
 */
export interface PagedKernels {
  /** pool[slots[i]] = src[i]: src [N, Hkv, hd] contiguous, slots int64 [N], pool [S, Hkv, hd] contiguous, in place */
  pagedWrite(src: View, slots: View, pool: View): void;
  /**
   * out[n, h] = softmax_j(scale q[n, h].k_j) v_j over the keys j of query n's sequence seq[n] with
   * j <= pos[n] (and inside the window), k_j = kPool[table[seq[n], j / blockSize] * blockSize + j % blockSize];
   * q/out [N, H, hd], pools [S, Hkv, hd], table int32 [numSeqs, maxBlocks], seq/pos int32 [N]; all contiguous
   */
  pagedAttention(q: View, kPool: View, vPool: View, table: View, seq: View, pos: View, opts: PagedAttentionOpts, out: View): void;
}

/** Sizes of a block-sparse attention call (src/ops/sparse/block_sparse_attention.ts). */
export interface BlockSparseOpts {
  scale: number;
  /** query i (at position i + Tk - Tq) also never sees keys j > i + Tk - Tq */
  causal: boolean;
  /** tokens per layout block (the last block of a sequence may be partial) */
  block: number;
  /** blocks per side of the layout part in use: ceil(Tk / block) */
  nBlocks: number;
  /** 1 (one layout for all heads) or H */
  layoutHeads: number;
}

/**
 * Fused kernels of a BERT-style encoder layer (src/ops/fused/add_layer_norm.ts, bias_gelu.ts).
 * Absent on a backend without them: the ops then run their composites. Inputs contiguous; the
 * activation code is GLU_ACTIVATIONS' (silu, gelu_tanh, gelu_erf).
 */
export interface EncoderKernels {
  /** the floating dtypes x, residual, weight and bias may have (all one dtype) */
  readonly dtypes: readonly DType[];
  /** sum = x + residual, out = LayerNorm(sum) over the last dim; mean and rstd [rows] of x's dtype */
  addLayerNorm(x: View, residual: View, weight: View | null, bias: View | null, eps: number, out: View, sum: View, mean: View, rstd: View): void;
  /** out = act(z); z of a `dtypes` dtype, out z's dtype or (a halfMatmul backend) bfloat16, rounded once */
  biasGelu(act: GluActivation, z: View, out: View): void;
  /**
   * dz = dy act'(z) over z [rows, N], dbias [N] = sum_rows dz (summed before any rounding of dz);
   * dy and dz z's dtype or bfloat16; dz may be dy itself
   */
  biasGeluBackward(act: GluActivation, z: View, dy: View, dz: View, dbias: View | null): void;
}

/**
 * One block of output columns of a fused decode projection (rmsNormQkvRope, rmsNormGateUpGlu): a quantized weight (int8, 4-bit, bf16), or a float32
 * weight [N, K] (contiguous); its bias float32 [N] or null.
 */
export type QkvPart = ({ quant: QuantWeight; weight?: undefined } | { weight: View; quant?: undefined }) & { bias: View | null };

/** The heads of rmsNormQkvRope's output row: q (H hd values), k and v (Hkv hd each). */
export interface QkvHeads {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  /** RoPE on pairs (2i, 2i+1) instead of HF's halves */
  interleaved: boolean;
}

/**
 * Fused kernels of a decode step (src/ops/fused/rms_norm_qkv_rope.ts). Absent on a backend
 * without them: the op runs its composite.
 */
export interface DecodeKernels {
  /** the most rows of x one call takes where a part is quantized (the decode GEMV's limit) */
  readonly maxQuantRows: number;
  /**
   * out [M, (H + 2 Hkv) hd] = rope(RMSNorm(x) [W0 | W1 | ...]ᵀ + biases) with RoPE on the q and k
   * columns, row m rotated by cos/sin row m; x [M, K], cos/sin [M, hd/2], out: contiguous float32
   */
  rmsNormQkvRope(
    x: View, normWeight: View | null, eps: number, offset: number, parts: readonly QkvPart[], cos: View, sin: View, heads: QkvHeads, out: View,
  ): void;
  /**
   * out [M, F] = act(gate) * up with [gate | up] = RMSNorm(x) [W0 | W1 | ...]ᵀ + biases (the parts
   * give 2F outputs: gate first); x [M, K], out contiguous float32
   */
  rmsNormGateUpGlu(x: View, normWeight: View | null, eps: number, offset: number, parts: readonly QkvPart[], act: GluActivation, out: View): void;
  /** out [M, N] = x [W0 | ...]ᵀ + biases + residual; x [M, K], residual and out [M, N], all contiguous float32 */
  linearResidual(x: View, parts: readonly QkvPart[], residual: View, out: View): void;
}

/**
 * Block-sparse attention (Child et al. 2019; DeepSpeed's sparse attention): query block i of head h
 * attends the keys of blocks rowIdx[rowPtr[h nb + i] .. rowPtr[h nb + i + 1]) (int32, ascending);
 * query row i belongs to block floor((i + Tk - Tq) / block). colPtr/colIdx are the same layout by
 * key block (the backward's dk/dv side). q [B,H,Tq,hd], k/v [B,Hkv,Tk,hd] contiguous float32,
 * lse [B,H,Tq] float32 (-inf on a row that sees no key; its out is 0). Absent on a backend
 * without them: the op then runs dense attention with the layout's element mask.
 */
export interface SparseAttentionKernels {
  blockSparseAttention(q: View, k: View, v: View, rowPtr: View, rowIdx: View, opts: BlockSparseOpts, out: View, lse: View): void;
  blockSparseAttentionBackward(
    q: View, k: View, v: View, rowPtr: View, rowIdx: View, colPtr: View, colIdx: View, out: View, lse: View, dout: View,
    opts: BlockSparseOpts, dq: View, dk: View, dv: View,
  ): void;
}

/** One parameter's tensors for the AdamW kernel. */
export interface AdamWTensors {
  param: View;
  grad: View;
  expAvg: View;
  expAvgSq: View;
}

/** One product of matmulList: out [M, N] = a [M, K] @ b [K, N] (a, b row-major or transposed views; out contiguous). */
export interface MatmulItem {
  a: View;
  b: View;
  out: View;
}

/** One AdamW step's hyper-parameters; bc1/bc2 are the bias corrections 1 - beta^t. */
export interface AdamWStep {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  bc1: number;
  bc2: number;
}

export const BACKEND_NAMES = ['ref', 'cpu', 'cuda'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];
export const isBackendName = (s: string): s is BackendName => (BACKEND_NAMES as readonly string[]).includes(s);

export interface Backend {
  readonly name: BackendName;
  /** a new block of numel elements (zeroed when zero is true; otherwise contents undefined) */
  alloc(dtype: DType, numel: number, tag: MemoryTag, zero: boolean): Storage;
  /** a new block holding a copy of data (in dtype's storage representation: makeArray(dtype)) */
  fromArray(dtype: DType, data: TypedArray, tag: MemoryTag): Storage;
  /** a copy of count elements starting at element offset, in dtype's storage representation */
  read(storage: Storage, offset: number, count: number): TypedArray;
  /**
   * Reads `bytes` bytes at `position` of the open file fd into storage at byte `byteOffset` with no
   * staging buffer (checkpoint loading: each byte copied once); absent where the bytes must be staged.
   */
  readFile?(storage: Storage, byteOffset: number, fd: number, position: number, bytes: number): void;
  readonly kernels: Kernels;
  /** STFT / FFT kernels; absent where features are computed on another backend */
  readonly spectral?: SpectralKernels;
  /** paged KV-cache kernels; absent where the serving engine falls back to one request at a time */
  readonly paged?: PagedKernels;
  /** block-sparse attention kernels; absent where the op falls back to masked dense attention */
  readonly sparseAttention?: SparseAttentionKernels;
  /** fused encoder-layer kernels; absent where the ops run their composites */
  readonly encoder?: EncoderKernels;
  /** fused decode-step kernels; absent where the ops run their composites */
  readonly decode?: DecodeKernels;
  /** matmul takes float16/bfloat16 operands itself (float32 accumulation); else the op upcasts them */
  readonly halfMatmul: boolean;
  /**
   * matmul also takes a float32 b with a half a, rounding b to a's dtype as it packs it (nearest
   * even): bit for bit the product of b cast first, without the half copy. Absent: cast b first.
   */
  readonly halfMatmulFloatB?: boolean;
  /**
   * unary/unaryGrad, binary, reduce sum, glu/gluBackward, rmsNorm/rmsNormBackward, rope and
   * softmax/softmaxBackward take float16/bfloat16 operands themselves (computed in float32, rounded
   * once: the values the op's upcast path gives, bit for bit); else the op upcasts them
   */
  readonly halfElementwise: boolean;
  /** attention/attentionBackward take float16/bfloat16 q, k, v themselves (float32 lse and mask); else the op upcasts them */
  readonly halfAttention: boolean;
  /**
   * attention (forward) takes k and v whose heads lie apart (rows of hd values contiguous within a
   * head, any batch and head strides): a KV cache's narrowed prefix without a copy. Absent: contiguous k, v.
   */
  readonly attentionStridedKv?: boolean;
}
