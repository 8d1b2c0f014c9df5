// float16/bfloat16 operands for the CPU's float32 elementwise, norm, rope, softmax and attention
// kernels (the Backend.halfElementwise / halfAttention contract): each half input is widened into
// a float32 scratch block, the float32 kernel runs, each half output is rounded once from its
// float32 scratch. The values are those of the op layer's upcast path, bit for bit (the same
// copy kernel widens and rounds, and the float32 kernel sees contiguous inputs as it does there),
// but the float32 copies live only for the call: autograd saves the half tensors, so a bf16
// model's activations take half the bytes, and no cast ops or graph nodes are recorded.
// Broadcast dims (stride 0) stay broadcast in the scratch, so `x * bias` widens the bias only once.
// bfloat16 attention is the exception where the CPU multiplies bf16 (bf16Attention), or where a
// decode step reads a bf16 KV cache: q, k, v, out and dout go to native/attention.cc as they are,
// and only its float32 results are rounded here. glu and
// gluBackward are not wrapped: native/glu.cc widens and rounds half operands chunk by chunk itself
// (the same values, no full-size scratch).
import { isHalf } from '../../tensor/dtype.js';
import { Layout, contiguousStrides, numel } from '../../tensor/layout.js';
import type { Storage } from '../../tensor/storage.js';
import type { Kernels, View } from '../kernels.js';

/** Allocates an uninitialised float32 scratch block of numel elements, tagged as activation memory. */
export type ScratchAlloc = (numel: number) => Storage;

/** bf16Attention() true: bfloat16 attention operands go to the kernels as they are (the CPU multiplies bf16). */
export function withHalfOperands(k: Kernels, scratch: ScratchAlloc, bf16Attention: () => boolean = () => false): Kernels {
  /** One kernel call's scratch blocks: half inputs widened, half outputs computed in float32. */
  function call(fn: (input: (v: View) => View, output: (v: View) => View) => void): void {
    const blocks: Storage[] = [];
    const results: [View, View][] = [];
    const input = (v: View): View => {
      if (!isHalf(v.dtype)) return v;
      // a broadcast dim keeps stride 0: the scratch holds the view with those dims at size 1
      const { shape, strides, offset } = v.layout;
      const compact = shape.map((s, i) => (strides[i] === 0 ? 1 : s));
      const s = scratch(numel(compact));
      blocks.push(s);
      const dense: View = { storage: s, dtype: 'float32', layout: new Layout(compact) };
      k.copy({ storage: v.storage, dtype: v.dtype, layout: new Layout(compact, strides, offset) }, dense);
      const cs = contiguousStrides(compact);
      return { storage: s, dtype: 'float32', layout: new Layout(shape, cs.map((c, i) => (strides[i] === 0 ? 0 : c))) };
    };
    const output = (v: View): View => {
      if (!isHalf(v.dtype)) return v;
      const s = scratch(v.layout.numel);
      blocks.push(s);
      const f: View = { storage: s, dtype: 'float32', layout: new Layout(v.layout.shape) };
      results.push([f, v]);
      return f;
    };
    try {
      fn(input, output);
      for (const [f, v] of results) k.copy(f, v);
    } finally {
      for (const s of blocks) s.release();
    }
  }
  const opt = (f: (v: View) => View, v: View | null): View | null => (v === null ? null : f(v));
  /** Views passed as they are when every one is bfloat16 (a kernel that multiplies bf16 itself), else widened. */
  const bf16Operands = (widen: (v: View) => View, ...vs: View[]): ((v: View) => View) =>
    vs.every((v) => v.dtype === 'bfloat16') && bf16Attention() ? (v) => v : widen;

  return {
    ...k,
    unary: (op, x, out, p0, p1) => call((i, o) => k.unary(op, i(x), o(out), p0, p1)),
    unaryGrad: (op, x, dy, dx, p0, p1) => call((i, o) => k.unaryGrad(op, i(x), i(dy), o(dx), p0, p1)),
    binary: (op, a, b, out) => call((i, o) => k.binary(op, i(a), i(b), o(out))),
    reduce: (op, x, out) => call((i, o) => k.reduce(op, i(x), o(out))),
    softmax: (x, out, log) => call((i, o) => k.softmax(i(x), o(out), log)),
    softmaxBackward: (y, dy, dx, log) => call((i, o) => k.softmaxBackward(i(y), i(dy), o(dx), log)),
    rmsNorm: (x, w, eps, offset, out, rstd) => call((i, o) => k.rmsNorm(i(x), opt(i, w), eps, offset, o(out), rstd)),
    rmsNormBackward: (x, w, offset, rstd, dy, dx, dw) =>
      call((i, o) => k.rmsNormBackward(i(x), opt(i, w), offset, rstd, i(dy), o(dx), opt(o, dw))),
    rope: (x, cos, sin, out, opts) => call((i, o) => k.rope(i(x), cos, sin, o(out), opts)),
    // bfloat16 q, k, v (and out, dout) go to native/attention.cc as they are: its tile products run
    // on the bf16 GEMM; it writes float32 out / dq / dk / dv, rounded here once. float16 is widened.
    attention: (q, kk, v, mask, opts, out, lse) => call((i, o) => {
      // one query position without dropout (a decode step, over a KV cache kept in bf16): the
      // kernel reads the bf16 rows itself, where widening would copy the whole cache every step
      // (the kernel's forward_one: rep <= 64 query heads per kv head, native/attention.cc's kRowsPerBlock)
      const decode = q.layout.shape[2] === 1 && opts.dropout === 0 && q.layout.shape[1] <= 64 * kk.layout.shape[1] &&
        [q, kk, v].every((x) => x.dtype === 'bfloat16');
      const h = decode ? (x: View): View => x : bf16Operands(i, q, kk, v);
      k.attention(h(q), h(kk), h(v), mask, opts, o(out), lse);
    }),
    attentionBackward: (q, kk, v, mask, out, lse, dout, opts, dq, dk, dv) => call((i, o) => {
      const h = bf16Operands(i, q, kk, v, out, dout);
      k.attentionBackward(h(q), h(kk), h(v), mask, h(out), lse, h(dout), opts, o(dq), o(dk), o(dv));
    }),
  };
}
