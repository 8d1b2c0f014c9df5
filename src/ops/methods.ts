// The user-facing Tensor methods (x.add(y), x.softmax(-1)), attached here so that the handle
// in src/tensor/ stays free of op imports. Each delegates to the op of the same name.
import type { BackendName } from '../backend/kernels.js';
import { type DType, isDType } from '../tensor/dtype.js';
import { Tensor } from '../tensor/tensor.js';
import * as E from './elementwise.js';
import * as I from './indexing.js';
import { matmul } from './matmul.js';
import * as R from './reduce.js';
import { logSoftmax, softmax } from './softmax.js';
import * as X from './transfer.js';
import * as V from './view.js';

type Operand = Tensor | number;

declare module '../tensor/tensor.js' {
  interface Tensor {
    add(o: Operand): Tensor; sub(o: Operand): Tensor; mul(o: Operand): Tensor; div(o: Operand): Tensor;
    pow(o: Operand): Tensor; maximum(o: Operand): Tensor; minimum(o: Operand): Tensor;
    eq(o: Operand): Tensor; ne(o: Operand): Tensor; lt(o: Operand): Tensor; le(o: Operand): Tensor;
    gt(o: Operand): Tensor; ge(o: Operand): Tensor;
    neg(): Tensor; exp(): Tensor; log(): Tensor; sqrt(): Tensor; rsqrt(): Tensor; abs(): Tensor;
    tanh(): Tensor; sigmoid(): Tensor; relu(): Tensor; silu(): Tensor; sin(): Tensor; cos(): Tensor;
    floor(): Tensor; sign(): Tensor; reciprocal(): Tensor;
    /** approximate 'none' (erf, default) or 'tanh', as torch.nn.functional.gelu */
    gelu(approximate?: 'none' | 'tanh'): Tensor;
    clamp(min?: number, max?: number): Tensor;
    where(cond: Tensor, other: Operand): Tensor;
    maskedFill(mask: Tensor, value: number): Tensor;
    matmul(o: Tensor): Tensor;
    sum(dims?: R.Dims, keepdim?: boolean): Tensor; mean(dims?: R.Dims, keepdim?: boolean): Tensor;
    max(dims?: R.Dims, keepdim?: boolean): Tensor; min(dims?: R.Dims, keepdim?: boolean): Tensor;
    argmax(dim?: number, keepdim?: boolean): Tensor; argmin(dim?: number, keepdim?: boolean): Tensor;
    var(dims?: R.Dims, keepdim?: boolean, correction?: number): Tensor;
    logsumexp(dims?: R.Dims, keepdim?: boolean): Tensor;
    softmax(dim?: number): Tensor; logSoftmax(dim?: number): Tensor;
    reshape(shape: readonly number[]): Tensor; view(shape: readonly number[]): Tensor;
    permute(dims: readonly number[]): Tensor; transpose(d0?: number, d1?: number): Tensor; t(): Tensor;
    narrow(dim: number, start: number, length: number): Tensor;
    slice(dim: number, start?: number, end?: number, step?: number): Tensor;
    select(dim: number, index: number): Tensor;
    expand(shape: readonly number[]): Tensor;
    squeeze(dim?: number): Tensor; unsqueeze(dim: number): Tensor;
    flatten(startDim?: number, endDim?: number): Tensor;
    contiguous(): Tensor; clone(): Tensor;
    gather(dim: number, index: Tensor): Tensor; indexSelect(dim: number, index: Tensor): Tensor;
    scatterAdd(dim: number, index: Tensor, src: Tensor): Tensor;
    split(size: number | readonly number[], dim?: number): Tensor[]; chunk(chunks: number, dim?: number): Tensor[];
    tril(diagonal?: number): Tensor; triu(diagonal?: number): Tensor;
    /** a cast to a dtype, or a copy on another backend ('cpu' | 'ref') */
    to(target: DType | BackendName): Tensor;
    float(): Tensor;
    toTypedArray(): import('../tensor/dtype.js').TypedArray;
    toFloat32Array(): Float32Array;
    toArray(): X.NestedNumbers;
    item(): number;
  }
}

const P = Tensor.prototype;
P.add = function (o) { return E.add(this, o); };
P.sub = function (o) { return E.sub(this, o); };
P.mul = function (o) { return E.mul(this, o); };
P.div = function (o) { return E.div(this, o); };
P.pow = function (o) { return E.pow(this, o); };
P.maximum = function (o) { return E.maximum(this, o); };
P.minimum = function (o) { return E.minimum(this, o); };
for (const op of ['eq', 'ne', 'lt', 'le', 'gt', 'ge'] as const) P[op] = function (o: Operand) { return E.compare(op, this, o); };
for (const op of ['neg', 'exp', 'log', 'sqrt', 'rsqrt', 'abs', 'tanh', 'sigmoid', 'relu', 'silu', 'sin', 'cos', 'floor', 'sign', 'reciprocal'] as const)
  P[op] = function () { return E.unary(op, this); };
P.gelu = function (approximate = 'none') { return E.unary(approximate === 'tanh' ? 'gelu_tanh' : 'gelu_erf', this); };
P.clamp = function (min, max) { return E.clamp(this, min, max); };
P.where = function (cond, other) { return E.where(cond, this, other); };
P.maskedFill = function (mask, value) { return E.maskedFill(this, mask, value); };
P.matmul = function (o) { return matmul(this, o); };
P.sum = function (d, k) { return R.sum(this, d, k); };
P.mean = function (d, k) { return R.mean(this, d, k); };
P.max = function (d, k) { return R.max(this, d, k); };
P.min = function (d, k) { return R.min(this, d, k); };
P.argmax = function (d, k) { return R.argmax(this, d, k); };
P.argmin = function (d, k) { return R.argmin(this, d, k); };
P.var = function (d, k, c) { return R.variance(this, d, k, c); };
P.logsumexp = function (d, k) { return R.logsumexp(this, d, k); };
P.softmax = function (d) { return softmax(this, d); };
P.logSoftmax = function (d) { return logSoftmax(this, d); };
P.reshape = function (s) { return V.reshape(this, s); };
P.view = function (s) { return V.view(this, s); };
P.permute = function (d) { return V.permute(this, d); };
P.transpose = function (a, b) { return V.transpose(this, a, b); };
P.t = function () {
  if (this.ndim !== 2) throw new Error(`t: expects a 2-d tensor, got ${this.ndim}-d (use transpose)`);
  return V.transpose(this, 0, 1);
};
P.narrow = function (d, s, l) { return V.narrow(this, d, s, l); };
P.slice = function (d, s, e, st) { return V.slice(this, d, s, e, st); };
P.select = function (d, i) { return V.select(this, d, i); };
P.expand = function (s) { return V.expand(this, s); };
P.squeeze = function (d) { return V.squeeze(this, d); };
P.unsqueeze = function (d) { return V.unsqueeze(this, d); };
P.flatten = function (s, e) { return V.flatten(this, s, e); };
P.contiguous = function () { return V.contiguous(this); };
P.clone = function () { return V.clone(this); };
P.gather = function (d, i) { return I.gather(this, d, i); };
P.indexSelect = function (d, i) { return I.indexSelect(this, d, i); };
P.scatterAdd = function (d, i, s) { return I.scatterAdd(this, d, i, s); };
P.split = function (s, d) { return I.split(this, s, d); };
P.chunk = function (c, d) { return I.chunk(this, c, d); };
P.tril = function (d) { return I.tril(this, d); };
P.triu = function (d) { return I.triu(this, d); };
P.to = function (target) {
  return isDType(target) ? E.to(this, target) : X.toBackend(this, target);
};
P.float = function () { return E.to(this, 'float32'); };
P.toTypedArray = function () { return X.toTypedArray(this); };
P.toFloat32Array = function () { return X.toFloat32Array(this); };
P.toArray = function () { return X.toArray(this); };
P.item = function () { return X.item(this); };
