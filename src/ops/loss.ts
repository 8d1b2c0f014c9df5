// Cross-entropy: the public op runs the fused log-softmax + NLL kernel (src/ops/fused/cross_entropy.ts);
// crossEntropyComposite defines it from logSoftmax and gather.
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { add, compare, div, mul, neg, to, unary, where } from './elementwise.js';
import { crossEntropyRows } from './fused/cross_entropy.js';
import { linearCrossEntropyFused } from './fused/linear_cross_entropy.js';
import { linear } from './matmul.js';
import { gather } from './indexing.js';
import { mean, sum } from './reduce.js';
import { logSoftmaxComposite } from './softmax.js';
import { reshape, unsqueeze, squeeze } from './view.js';
import { shapeStr } from '../tensor/layout.js';

export interface CrossEntropyOptions {
  /** targets equal to this are skipped (default -100, as in PyTorch) */
  ignoreIndex?: number;
  /** mixes the one-hot target with the uniform distribution (default 0) */
  labelSmoothing?: number;
  reduction?: 'mean' | 'sum' | 'none';
}

function flat(logits: Tensor, target: Tensor): [Tensor, Tensor] {
  const V = logits.shape[logits.ndim - 1];
  if (target.numel * V !== logits.numel || target.ndim !== logits.ndim - 1)
    throw new Error(`crossEntropy: logits ${shapeStr(logits.shape)} and target ${shapeStr(target.shape)} do not match ([..., V] and [...])`);
  if (target.dtype !== 'int64' && target.dtype !== 'int32') throw new Error(`crossEntropy: target must be int64, got ${target.dtype}`);
  return [reshape(logits, [-1, V]), reshape(target.dtype === 'int64' ? target : to(target, 'int64'), [-1])];
}

/** Applies the reduction to per-row losses; 'mean' divides by the number of non-ignored targets. */
function reduceRows(rows: Tensor, target: Tensor, ignoreIndex: number, reduction: CrossEntropyOptions['reduction']): Tensor {
  if (reduction === 'none') return rows;
  if (reduction === 'sum') return sum(rows);
  return div(sum(rows), sum(to(compare('ne', target, ignoreIndex), 'float32')));
}

/**
 * Mean (or summed) cross-entropy of logits [..., V] against integer targets [...].
 * @example k.crossEntropy(logits, labels, { ignoreIndex: -100 })
 */
export function crossEntropy(logits: Tensor, target: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const { ignoreIndex = -100, labelSmoothing = 0, reduction = 'mean' } = opts;
  if (!(labelSmoothing >= 0 && labelSmoothing <= 1)) throw new Error(`crossEntropy: labelSmoothing must be in [0, 1], got ${labelSmoothing}`);
  return tidy(() => {
    const [l2, t1] = flat(logits, target);
    const rows = crossEntropyRows(l2, t1, { ignoreIndex, labelSmoothing });
    const out = reduceRows(rows, t1, ignoreIndex, reduction);
    return reduction === 'none' ? reshape(out, target.shape) : out;
  });
}

/** The same loss from logSoftmax + gather (the definition the fused kernel is tested against). */
export function crossEntropyComposite(logits: Tensor, target: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const { ignoreIndex = -100, labelSmoothing = 0, reduction = 'mean' } = opts;
  return tidy(() => {
    const [l2, t1] = flat(logits, target);
    const keep = compare('ne', t1, ignoreIndex);
    const safe = where(keep, t1, 0);
    const logp = logSoftmaxComposite(l2, -1);
    const nll = neg(squeeze(gather(logp, 1, unsqueeze(safe, 1)), 1));
    const smooth = neg(mean(logp, -1));
    const row = add(mul(nll, 1 - labelSmoothing), mul(smooth, labelSmoothing));
    const rows = where(keep, row, 0);
    const out = reduceRows(rows, t1, ignoreIndex, reduction);
    return reduction === 'none' ? reshape(out, target.shape) : out;
  });
}


export interface LinearCrossEntropyOptions extends Omit<CrossEntropyOptions, 'reduction'> {
  /** 'none' is not offered: the chunks' gradients are computed in forward for a scalar loss */
  reduction?: 'mean' | 'sum';
  /** rows per chunk (default: a few MB of logits per chunk) */
  chunkSize?: number;
  /** logits become c tanh(logits / c) before the loss (Gemma 2's final_logit_softcapping); 0 = off */
  softcap?: number;
}

function flatRows(hidden: Tensor, weight: Tensor, target: Tensor): [Tensor, Tensor] {
  const D = hidden.shape[hidden.ndim - 1];
  if (hidden.ndim < 1 || target.ndim !== hidden.ndim - 1 || target.numel * D !== hidden.numel)
    throw new Error(`linearCrossEntropy: hidden ${shapeStr(hidden.shape)} and target ${shapeStr(target.shape)} do not match ([..., D] and [...])`);
  if (weight.ndim !== 2 || weight.shape[1] !== D)
    throw new Error(`linearCrossEntropy: weight ${shapeStr(weight.shape)} must be [V, ${D}] for hidden ${shapeStr(hidden.shape)}`);
  if (target.dtype !== 'int64' && target.dtype !== 'int32') throw new Error(`linearCrossEntropy: target must be int64, got ${target.dtype}`);
  return [reshape(hidden, [-1, D]), reshape(target.dtype === 'int64' ? target : to(target, 'int64'), [-1])];
}

/**
 * crossEntropy(linear(hidden, weight), target) without ever holding the [N, V] logits or their
 * gradient (src/ops/fused/linear_cross_entropy.ts): the LM-head loss of a training step.
 * @example const loss = k.linearCrossEntropy(h, lmHead.weight, labels, { ignoreIndex: -100 })
 */
export function linearCrossEntropy(hidden: Tensor, weight: Tensor, target: Tensor, opts: LinearCrossEntropyOptions = {}): Tensor {
  const { ignoreIndex = -100, labelSmoothing = 0, reduction = 'mean', chunkSize, softcap = 0 } = opts;
  if (!(labelSmoothing >= 0 && labelSmoothing <= 1)) throw new Error(`linearCrossEntropy: labelSmoothing must be in [0, 1], got ${labelSmoothing}`);
  if (reduction !== 'mean' && reduction !== 'sum')
    throw new Error(`linearCrossEntropy: reduction must be 'mean' or 'sum', got '${reduction as string}' (use linear + crossEntropy for per-token losses)`);
  return tidy(() => {
    const [h2, t1] = flatRows(hidden, weight, target);
    return linearCrossEntropyFused(h2, weight, t1, { ignoreIndex, labelSmoothing, reduction, chunkSize, softcap });
  });
}

/** The same loss from linear, the soft-cap and crossEntropy (the definition the fused op is tested against). */
export function linearCrossEntropyComposite(hidden: Tensor, weight: Tensor, target: Tensor, opts: LinearCrossEntropyOptions = {}): Tensor {
  const { softcap = 0, chunkSize: _chunk, ...ce } = opts;
  return tidy(() => {
    let logits = linear(hidden, weight);
    if (softcap > 0) logits = mul(unary('tanh', div(logits, softcap)), softcap);
    return crossEntropy(logits, target, ce);
  });
}
