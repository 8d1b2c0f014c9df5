// Matrix products. matmul follows torch.matmul's broadcasting; a transposed operand reaches the
// kernel as a strided view (no copy). linear = x Wᵀ + b with W in PyTorch's [out, in] layout.
import { backendOf, withLayout } from '../backend/index.js';
import { isFloat, isHalf } from '../tensor/dtype.js';
import { noGrad } from '../tensor/grad_mode.js';
import { Layout, broadcastShapes, shapeStr } from '../tensor/layout.js';
import { tidy } from '../tensor/scope.js';
import { autocast, autocastDtype } from '../tensor/autocast.js';
import type { Tensor } from '../tensor/tensor.js';
import { emptyLike, inputs, needsGrad, record, save } from './dispatch.js';
import { add, to } from './elementwise.js';
import { sumToShape } from './reduce.js';
import { canFuseLinear, linearFused } from './fused/linear.js';
import { canRecastLinear, linearRecast } from './fused/recast_linear.js';
import { contiguous, reshape, squeeze, transpose, unsqueeze } from './view.js';

/** True when the last two dims can be read by the GEMM directly (row-major or transposed). */
export function gemmReadable(t: Tensor): boolean {
  const n = t.ndim;
  return t.strides[n - 1] === 1 || t.strides[n - 2] === 1 || t.shape[n - 1] === 1 || t.shape[n - 2] === 1;
}

/** The batched kernel call on operands that are at least 2-d. */
function matmulKernel(a: Tensor, b: Tensor): Tensor {
  const [M, K] = a.shape.slice(-2);
  const [K2, N] = b.shape.slice(-2);
  if (K !== K2) throw new Error(`matmul: shapes ${shapeStr(a.shape)} and ${shapeStr(b.shape)} do not align (${K} != ${K2})`);
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2), 'matmul');
  const la = a.layout.expand([...batch, M, K]);
  const lb = b.layout.expand([...batch, K, N]);
  const out = emptyLike(a, [...batch, M, N]);
  backendOf(a).kernels.matmul(fix(a, la), fix(b, lb), out, false);
  return out;
}

/**
 * out += a @ b (accumulate false: out = a @ b) for 2-d operands the GEMM reads directly (gemmReadable);
 * out [M, N] contiguous, float32 for half operands or their dtype.
 */
export function matmulInto(a: Tensor, b: Tensor, out: Tensor, accumulate = true): void {
  backendOf(a).kernels.matmul(fix(a, a.layout), fix(b, b.layout), out, accumulate);
}

/** A view whose size-1 inner dims get the strides the kernel expects (any stride is valid there). */
function fix(t: Tensor, l: Layout) {
  const n = l.ndim;
  const strides = [...l.strides];
  if (l.shape[n - 1] === 1 && strides[n - 2] !== 1) strides[n - 1] = 1;
  else if (l.shape[n - 2] === 1 && strides[n - 1] !== 1) strides[n - 2] = 1;
  return withLayout(t, new Layout(l.shape, strides, l.offset));
}

/**
 * Matrix product with torch.matmul semantics (1-d operands, broadcast batch dims).
 * @example k.matmul(x, w.t())  // [B, T, D] @ [D, N] -> [B, T, N]
 */
export function matmul(a: Tensor, b: Tensor): Tensor {
  inputs('matmul', a, b);
  if (a.ndim === 0 || b.ndim === 0) throw new Error('matmul: both operands need at least 1 dim');
  const ac = autocastDtype();
  if (ac && isFloat(a.dtype) && isFloat(b.dtype) && (a.dtype !== ac || b.dtype !== ac))
    return tidy(() => matmul(a.dtype === ac ? a : to(a, ac), b.dtype === ac ? b : to(b, ac)));
  if (!isFloat(a.dtype) || a.dtype !== b.dtype)
    throw new Error(`matmul: operands must share a float dtype, got ${a.dtype} and ${b.dtype}`);
  if (a.ndim === 1 || b.ndim === 1) {
    return tidy(() => {
      const a2 = a.ndim === 1 ? unsqueeze(a, 0) : a;
      const b2 = b.ndim === 1 ? unsqueeze(b, -1) : b;
      let out = matmul(a2, b2);
      if (b.ndim === 1) out = squeeze(out, -1);
      if (a.ndim === 1) out = squeeze(out, -2);
      return out;
    });
  }
  if (isHalf(a.dtype) && !backendOf(a).halfMatmul) return halfMatmul(a, b);
  const ca = gemmReadable(a) ? a : contiguous(a);
  const cb = gemmReadable(b) ? b : contiguous(b);
  let out = matmulKernel(ca, cb);
  if (needsGrad(ca, cb)) {
    const [sa, sb] = [save(ca), save(cb)];
    out = record('matmul', out, [ca, cb], (g) => [
      ca.requiresGrad ? sumToShape(matmul(g, transpose(sb)), sa.shape) : null,
      cb.requiresGrad ? weightGrad(sa, g, sb.shape) : null,
    ], [sa, sb]);
  }
  if (ca !== a) ca.dispose();
  if (cb !== b) cb.dispose();
  return out;
}

/**
 * float16/bfloat16 operands: a float32 GEMM on upcast copies (float32 accumulation), rounded back;
 * backward keeps only the half-precision operands, so saved activations stay half-size.
 */
function halfMatmul(a: Tensor, b: Tensor): Tensor {
  const out = autocast(null, () => noGrad(() => tidy(() => to(matmul(to(a, 'float32'), to(b, 'float32')), a.dtype))));
  if (!needsGrad(a, b)) return out;
  const [sa, sb] = [save(a), save(b)];
  return record('matmul', out, [a, b], (g) => autocast(null, () => [
    a.requiresGrad ? sumToShape(matmul(g, transpose(sb)), sa.shape) : null,
    b.requiresGrad ? weightGrad(sa, g, sb.shape) : null,
  ]), [sa, sb]);
}

/** d(b) = aᵀ g, folding the batch into one GEMM when b was shared across it (a linear layer). */
export function weightGrad(a: Tensor, g: Tensor, bShape: readonly number[]): Tensor {
  if (bShape.length === 2 && a.ndim > 2) {
    const K = a.shape[a.ndim - 1];
    const N = g.shape[g.ndim - 1];
    return matmul(transpose(reshape(a, [-1, K])), reshape(g, [-1, N]));
  }
  return sumToShape(matmul(transpose(a), g), bShape);
}

/**
 * y = x Wᵀ + b (torch.nn.functional.linear); weight is [out, in].
 * @example k.linear(x, w, b)  // [B, T, in] -> [B, T, out]
 */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  if (weight.ndim !== 2) throw new Error(`linear: weight must be 2-d [out, in], got ${shapeStr(weight.shape)}`);
  if (x.shape[x.ndim - 1] !== weight.shape[1])
    throw new Error(`linear: input ${shapeStr(x.shape)} does not match weight ${shapeStr(weight.shape)} (in features ${weight.shape[1]})`);
  if (canFuseLinear(x, weight, bias)) return linearFused(x, weight, bias);
  return canRecastLinear(x, weight, bias) ? linearRecast(x, weight) : linearComposite(x, weight, bias);
}

/** The definition linearFused equals: matmul, then the bias added by broadcasting. */
export function linearComposite(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  return tidy(() => {
    const y = matmul(x, transpose(weight));
    return bias ? add(y, bias) : y;
  });
}
