// The op table the generic tests iterate: every differentiable op with input shapes and a
// domain that avoids kinks (relu/abs/clamp at 0 or at bounds) and ties (max).
import * as k from '../../src/index.js';

export type F = (...xs: k.Tensor[]) => k.Tensor;
export interface Case {
  name: string;
  f: F;
  shapes: number[][];
  lo?: number;
  hi?: number;
}

/** int64 ids on the backend of the first input (ops require one backend). */
const ids = (vals: number[], shape = [vals.length], like?: k.Tensor): k.Tensor =>
  k.tensor(vals, { dtype: 'int64', shape, backend: like?.backendName ?? k.defaultBackend().name });

export const cases: Case[] = [
  // unary (domains keep away from kinks: relu/abs/clamp at 0 or bounds)
  ...(['neg', 'exp', 'tanh', 'sigmoid', 'silu', 'sin', 'cos'] as const).map((op) => ({ name: op, f: (x: k.Tensor) => x[op](), shapes: [[3, 4]] })),
  { name: 'log', f: (x) => x.log(), shapes: [[7]], lo: 0.5, hi: 2 },
  { name: 'sqrt', f: (x) => x.sqrt(), shapes: [[7]], lo: 0.5, hi: 2 },
  { name: 'rsqrt', f: (x) => x.rsqrt(), shapes: [[7]], lo: 0.5, hi: 2 },
  { name: 'reciprocal', f: (x) => x.reciprocal(), shapes: [[7]], lo: 0.5, hi: 2 },
  { name: 'abs', f: (x) => x.abs(), shapes: [[7]], lo: 0.1, hi: 1 },
  { name: 'relu', f: (x) => x.relu(), shapes: [[7]], lo: 0.1, hi: 1 },
  { name: 'gelu erf', f: (x) => x.gelu(), shapes: [[3, 5]], lo: -3, hi: 3 },
  { name: 'gelu tanh', f: (x) => x.gelu('tanh'), shapes: [[3, 5]], lo: -3, hi: 3 },
  { name: 'pow scalar', f: (x) => x.pow(2.5), shapes: [[6]], lo: 0.5, hi: 2 },
  { name: 'clamp', f: (x) => x.clamp(-0.5, 0.5), shapes: [[2, 3]], lo: -0.45, hi: 0.45 },
  // binary with broadcasting (scalar, size-1 and leading dims)
  { name: 'add broadcast', f: (a, b) => a.add(b), shapes: [[2, 3], [3]] },
  { name: 'sub broadcast', f: (a, b) => a.sub(b), shapes: [[2, 1, 3], [4, 1]] },
  { name: 'mul broadcast', f: (a, b) => a.mul(b), shapes: [[2, 3], [2, 1]] },
  { name: 'mul scalar tensor', f: (a, b) => a.mul(b), shapes: [[2, 3], []] },
  { name: 'div', f: (a, b) => a.div(b), shapes: [[2, 3], [2, 3]], lo: 0.5, hi: 2 },
  { name: 'pow tensor', f: (a, b) => a.pow(b), shapes: [[2, 3], [3]], lo: 0.5, hi: 2 },
  { name: 'maximum', f: (a, b) => k.maximum(a, b), shapes: [[4], [4]] },
  { name: 'minimum', f: (a, b) => k.minimum(a, b), shapes: [[4], [4]] },
  { name: 'where', f: (a, b) => k.where(a.gt(0), a, b), shapes: [[3, 3], [3]] },
  // reductions
  { name: 'sum all', f: (x) => x.sum(), shapes: [[3, 4]] },
  { name: 'sum dims keepdim', f: (x) => x.sum([0, 2], true), shapes: [[2, 3, 4]] },
  { name: 'mean', f: (x) => x.mean(1), shapes: [[3, 4]] },
  { name: 'max dim', f: (x) => x.max(1), shapes: [[3, 5]] },
  { name: 'min all', f: (x) => x.min(), shapes: [[3, 5]] },
  { name: 'var', f: (x) => x.var(-1), shapes: [[3, 5]] },
  { name: 'logsumexp', f: (x) => x.logsumexp(-1), shapes: [[3, 5]] },
  { name: 'softmax', f: (x) => x.softmax(-1), shapes: [[3, 5]] },
  { name: 'softmax dim 0', f: (x) => x.softmax(0), shapes: [[3, 5]] },
  { name: 'logSoftmax', f: (x) => x.logSoftmax(1), shapes: [[2, 4, 3]] },
  // linear algebra
  { name: 'matmul', f: (a, b) => a.matmul(b), shapes: [[3, 4], [4, 2]] },
  { name: 'matmul batched broadcast', f: (a, b) => a.matmul(b), shapes: [[2, 3, 4], [4, 5]] },
  { name: 'matmul transposed operands', f: (a, b) => a.transpose().matmul(b.transpose()), shapes: [[4, 3], [2, 4]] },
  { name: 'matmul vector', f: (a, b) => a.matmul(b), shapes: [[4], [4, 3]] },
  { name: 'linear', f: (x, w, b) => k.linear(x, w, b), shapes: [[2, 3, 4], [5, 4], [5]] },
  // views
  { name: 'reshape', f: (x) => x.reshape([6, 2]).mul(x.reshape([6, 2])), shapes: [[3, 4]] },
  { name: 'permute', f: (x) => x.permute([2, 0, 1]).contiguous(), shapes: [[2, 3, 4]] },
  { name: 'narrow', f: (x) => x.narrow(1, 1, 2), shapes: [[3, 4]] },
  { name: 'slice step', f: (x) => x.slice(1, 0, 5, 2), shapes: [[2, 5]] },
  { name: 'select', f: (x) => x.select(0, 1), shapes: [[3, 4]] },
  { name: 'expand', f: (x) => x.expand([3, 2, 4]).mul(2), shapes: [[2, 1]] },
  { name: 'squeeze/unsqueeze', f: (x) => x.unsqueeze(0).squeeze(2), shapes: [[3, 1, 2]] },
  // indexing
  { name: 'gather', f: (x) => x.gather(1, ids([0, 2, 1, 1, 0, 0], [3, 2], x)), shapes: [[3, 4]] },
  { name: 'indexSelect', f: (x) => x.indexSelect(0, ids([2, 0, 2], [3], x)), shapes: [[3, 4]] },
  { name: 'embedding', f: (w) => k.embedding(ids([1, 3, 1, 0], [2, 2], w), w), shapes: [[4, 3]] },
  { name: 'scatterAdd', f: (b, s) => k.scatterAdd(b, 0, ids([0, 2, 2, 1], [2, 2], b), s), shapes: [[3, 2], [2, 2]] },
  { name: 'indexAdd', f: (b, s) => k.indexAdd(b, 0, ids([2, 0], [2], b), s), shapes: [[3, 2], [2, 2]] },
  { name: 'cat', f: (a, b) => k.cat([a, b], 1), shapes: [[2, 3], [2, 2]] },
  { name: 'stack', f: (a, b) => k.stack([a, b], 0), shapes: [[2, 3], [2, 3]] },
  { name: 'split', f: (x) => x.split(2, 1)[1], shapes: [[2, 5]] },
  { name: 'tril', f: (x) => x.tril(), shapes: [[3, 4]] },
  { name: 'triu diagonal 1', f: (x) => x.triu(1), shapes: [[3, 3]] },
  { name: 'maskedFill', f: (x) => x.maskedFill(x.lt(0), 2), shapes: [[3, 3]] },
  // fused ops
  { name: 'rmsNorm', f: (x, w) => k.rmsNorm(x, w, { eps: 1e-5 }), shapes: [[3, 6], [6]] },
  { name: 'rmsNorm offset (Gemma)', f: (x, w) => k.rmsNorm(x, w, { eps: 1e-5, offset: 1 }), shapes: [[2, 5], [5]] },
  { name: 'layerNorm', f: (x, w, b) => k.layerNorm(x, w, b), shapes: [[3, 6], [6], [6]] },
  { name: 'crossEntropy', f: (x) => k.crossEntropy(x, ids([1, 0, 4], [3], x)), shapes: [[3, 5]] },
  {
    name: 'crossEntropy smoothing + ignore + sum',
    f: (x) => k.crossEntropy(x, ids([1, -100, 4], [3], x), { labelSmoothing: 0.1, reduction: 'sum' }),
    shapes: [[3, 5]],
  },
  {
    name: 'linearCrossEntropy chunked, smoothing, ignore',
    f: (h, w) => k.linearCrossEntropy(h, w, ids([1, -100, 4, 0, 2], [5], h), { labelSmoothing: 0.1, chunkSize: 2 }),
    shapes: [[5, 3], [6, 3]],
  },
  {
    name: 'linearCrossEntropy softcap, sum',
    f: (h, w) => k.linearCrossEntropy(h, w, ids([3, 0, 5], [3], h), { softcap: 2, reduction: 'sum', chunkSize: 2 }),
    shapes: [[3, 4], [6, 4]],
    lo: -2,
    hi: 2,
  },
  {
    name: 'rope',
    f: (x) => {
      const { cos, sin } = k.rotaryTables(ids([0, 1, 2, 5, 3, 4, 7, 9], [2, 4], x), 6, 100);
      return k.rope(x, cos.to(x.dtype), sin.to(x.dtype));
    },
    shapes: [[2, 3, 4, 6]],
  },
  {
    name: 'rope interleaved',
    f: (x) => {
      const { cos, sin } = k.rotaryTables(ids([3, 1, 2], [1, 3], x), 4, 100);
      return k.rope(x, cos.to(x.dtype), sin.to(x.dtype), { interleaved: true });
    },
    shapes: [[1, 2, 3, 4]],
  },
  ...(['silu', 'gelu_tanh', 'gelu'] as const).map((act) => ({ name: `glu ${act}`, f: (g: k.Tensor, u: k.Tensor) => k.glu(g, u, act), shapes: [[3, 5], [3, 5]], lo: -3, hi: 3 })),
  // the halves of one fused gate_up buffer (strided gate and up, both gradients land in one input)
  { name: 'glu of gate_up halves', f: (gu) => k.glu(k.narrow(gu, -1, 0, 4), k.narrow(gu, -1, 4, 4), 'silu'), shapes: [[2, 3, 8]], lo: -3, hi: 3 },
  { name: 'attention causal GQA', f: (q, kk, v) => k.scaledDotProductAttention(q, kk, v, { causal: true }), shapes: [[1, 4, 5, 3], [1, 2, 5, 3], [1, 2, 5, 3]] },
  {
    name: 'attention window + softcap',
    f: (q, kk, v) => k.scaledDotProductAttention(q, kk, v, { causal: true, window: 2, softcap: 2 }),
    shapes: [[1, 2, 4, 3], [1, 1, 4, 3], [1, 1, 4, 3]],
  },
];

