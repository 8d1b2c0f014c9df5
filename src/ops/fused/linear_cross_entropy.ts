// Chunked linear + cross-entropy (Liger's fused_linear_cross_entropy, Unsloth's chunked loss):
// equals linearCrossEntropyComposite = crossEntropy(softcap(hidden Wᵀ), target) with reduction
// 'mean' or 'sum', but never holds the [N, V] logits or their gradient. Rows are processed in
// chunks of about CHUNK_BYTES of logits; for each chunk, with z = h Wᵀ (capped: c tanh(z / c)):
//   loss rows and lse from the crossEntropy kernel, dz = s (softmax(z) - onehot_smoothed) [x (1 - tanh²)]
//   dh_chunk = dz W,   dW += dzᵀ h_chunk   (dW only when the weight requires grad)
// where s = 1 / (non-ignored targets) for 'mean' and 1 for 'sum'. The gradients are computed in
// the forward pass; backward only scales them by the incoming scalar gradient, in place. On a
// backend whose GEMM takes half operands (Backend.halfMatmul), under bf16/fp16 autocast or with
// half inputs, the three products run on half copies of h, W and dz with float32 results (the
// logits, dh and dW are never rounded to half), as transformers computes a bf16 head; a float32 W
// is rounded inside the GEMM where the backend does that (halfMatmulFloatB), not copied.
import { backendOf } from '../../backend/index.js';
import { autocastDtype } from '../../tensor/autocast.js';
import { type DType, isHalf } from '../../tensor/dtype.js';
import type { CrossEntropyOpts } from '../../backend/kernels.js';
import { noGrad } from '../../tensor/grad_mode.js';
import { shapeStr } from '../../tensor/layout.js';
import { tidy } from '../../tensor/scope.js';
import type { Tensor } from '../../tensor/tensor.js';
import { emptyLike, inputs, needsGrad, record, save } from '../dispatch.js';
import { compare, div, mul, sub, to, unary } from '../elementwise.js';
import { sum } from '../reduce.js';
import { contiguous, expand, narrow, transpose } from '../view.js';
import { full } from '../creation.js';
import { item } from '../transfer.js';

/**
 * Logits bytes per chunk when no chunkSize is given. Every chunk streams (and the GEMM packs) all
 * of W in each of its products, so small chunks are slow: on the smol135m shape (N=256, D=576,
 * V=49152) on 2 cores the head's GEMMs took ~250 ms with 37-row chunks (8 MiB) and ~160 ms with
 * 24 MiB ones, about the unfused time. The logit gradient overwrites the logits, so one buffer
 * of this size is all the loss holds.
 */
export const CHUNK_BYTES = 24 << 20;

/**
 * On a GPU the chunk is sized for the device instead: a GEMM of a few dozen rows leaves most of
 * the SMs idle, and every chunk costs launches. 512 MiB of logits is 2,700 rows at V = 49k and
 * still far below the [N, V] float32 logits (plus their gradient) that an unfused head holds.
 */
export const GPU_CHUNK_BYTES = 512 << 20;

/** Rows per chunk: as many equal chunks as `chunkBytes` of float32 logits require, at least 8 rows (or N). */
export function defaultChunkRows(N: number, V: number, chunkBytes = CHUNK_BYTES): number {
  const count = Math.max(1, Math.ceil((N * V * 4) / chunkBytes));
  return Math.min(Math.max(N, 1), Math.max(8, Math.ceil(N / count)));
}

export interface LinearCrossEntropyOpts extends CrossEntropyOpts {
  reduction: 'mean' | 'sum';
  /** rows per chunk (default: defaultChunkRows) */
  chunkSize?: number;
  /** tanh soft-capping of the logits, c tanh(z / c) (Gemma 2's final_logit_softcapping); 0 = off */
  softcap: number;
}

function check(hidden: Tensor, weight: Tensor, target: Tensor, o: LinearCrossEntropyOpts): void {
  const op = 'linearCrossEntropy';
  if (hidden.ndim !== 2 || weight.ndim !== 2 || hidden.shape[1] !== weight.shape[1])
    throw new Error(`${op}: hidden ${shapeStr(hidden.shape)} and weight ${shapeStr(weight.shape)} must be [N, D] and [V, D]`);
  if (target.ndim !== 1 || target.shape[0] !== hidden.shape[0])
    throw new Error(`${op}: target ${shapeStr(target.shape)} must be [N] for hidden ${shapeStr(hidden.shape)}`);
  if (target.dtype !== 'int64') throw new Error(`${op}: target must be int64, got ${target.dtype}`);
  if (o.chunkSize !== undefined && !(Number.isInteger(o.chunkSize) && o.chunkSize > 0))
    throw new Error(`${op}: chunkSize must be a positive integer, got ${o.chunkSize}`);
  if (!(o.softcap >= 0)) throw new Error(`${op}: softcap must be >= 0, got ${o.softcap}`);
}

/** The dtype of the head's GEMM operands: half on a backend that takes them (under autocast, or half inputs), else none. */
function halfGemm(hidden: Tensor, weight: Tensor): DType | null {
  if (!backendOf(hidden).halfMatmul) return null;
  const ac = autocastDtype();
  if (ac && isHalf(ac) && (hidden.dtype === 'float32' || isHalf(hidden.dtype))) return ac;
  return isHalf(hidden.dtype) && hidden.dtype === weight.dtype ? hidden.dtype : null;
}

export function linearCrossEntropyFused(hidden: Tensor, weight: Tensor, target: Tensor, o: LinearCrossEntropyOpts): Tensor {
  inputs('linearCrossEntropy', hidden, weight, target);
  check(hidden, weight, target, o);
  const gemm = halfGemm(hidden, weight);
  if (!gemm && (hidden.dtype !== weight.dtype || (hidden.dtype !== 'float32' && hidden.dtype !== 'float64'))) {
    // half precision (or mixed) inputs: compute in float32; the casts carry the gradient back
    const f = (t: Tensor): Tensor => (t.dtype === 'float32' ? t : to(t, 'float32'));
    return tidy(() => linearCrossEntropyFused(f(hidden), f(weight), target, o));
  }
  const [wantH, wantW] = [needsGrad(hidden), needsGrad(weight)];
  const { loss, dh, dw } = noGrad(() => tidy(() => {
    const r = chunkedPass(hidden, weight, target, o, wantH, wantW, gemm);
    // the gradients go back in their inputs' dtypes (float32 results of half GEMMs are rounded once here)
    return { loss: r.loss, dh: r.dh && r.dh.dtype !== hidden.dtype ? to(r.dh, hidden.dtype) : r.dh, dw: r.dw && r.dw.dtype !== weight.dtype ? to(r.dw, weight.dtype) : r.dw };
  }));
  if (!dh && !dw) return loss;
  // held from forward to backward: dh counts as activation memory, dW as the weight's gradient it becomes
  if (dh) dh.storage.tag = 'activation';
  if (dw) dw.storage.tag = 'grad';
  const saved = [dh, dw].filter((t): t is Tensor => t !== null).map(save);
  dh?.dispose();
  dw?.dispose();
  const [dhS, dwS] = [dh ? saved[0] : null, dw ? saved[saved.length - 1] : null];
  let applied = 1; // the factor dh and dw already carry (a retained graph's second backward rescales)
  return record('linearCrossEntropy', loss, [hidden, weight], (g) => {
    const s = item(g);
    if (applied === 0 && s !== 0)
      throw new Error('linearCrossEntropy backward: a first backward with a zero gradient cleared the stored gradients; a retained graph cannot be reused after it');
    const factor = applied === 0 ? 0 : s / applied;
    applied = s;
    const b = backendOf(g);
    for (const t of saved) {
      if (factor === 1) continue;
      // a half gradient (half inputs on a halfMatmul backend) on a backend whose binary kernel takes
      // no half operands scales through the op (float32, rounded once), then overwrites in place
      if (isHalf(t.dtype) && !b.halfElementwise) tidy(() => b.kernels.copy(mul(t, factor), t));
      else b.kernels.binary('mul', t, expand(full([], factor, { dtype: t.dtype, backend: t.backendName }), t.shape), t);
    }
    return [dhS?.alias() ?? null, dwS?.alias() ?? null];
  }, saved);
}

/** One pass over the row chunks: the reduced loss and, where wanted, dloss/dhidden and dloss/dweight. */
function chunkedPass(
  hidden: Tensor, weight: Tensor, target: Tensor, o: LinearCrossEntropyOpts, wantH: boolean, wantW: boolean, gemm: DType | null,
): { loss: Tensor; dh: Tensor | null; dw: Tensor | null } {
  const [N, D] = hidden.shape;
  const V = weight.shape[0];
  const k = backendOf(hidden).kernels;
  const ce: CrossEntropyOpts = { ignoreIndex: o.ignoreIndex, labelSmoothing: o.labelSmoothing };
  const chunk = o.chunkSize ? Math.min(Math.max(N, 1), o.chunkSize) : defaultChunkRows(N, V, hidden.backendName === 'cuda' ? GPU_CHUNK_BYTES : CHUNK_BYTES);
  const count = o.reduction === 'mean' ? tidy(() => item(sum(to(compare('ne', target, o.ignoreIndex), 'float32')))) : 1;
  // the GEMM operands (half copies under a half gemm); logits, losses and gradients in float32 then
  const cast = (x: Tensor): Tensor => (gemm && x.dtype !== gemm ? to(x, gemm) : contiguous(x));
  const h = cast(hidden);
  // a float32 weight stays float32 where the GEMM rounds it to half as it packs it (halfMatmulFloatB):
  // the same products without a [V, D] half copy (57 MB on a 49k vocabulary)
  const roundsW = gemm !== null && h.dtype === gemm && weight.dtype === 'float32' && backendOf(hidden).halfMatmulFloatB === true;
  const [w, t] = [roundsW ? contiguous(weight) : cast(weight), contiguous(target)];
  const acc: DType = gemm ? 'float32' : h.dtype;
  const wt = transpose(w, 0, 1); // [D, V], read transposed by the GEMM
  const rows = emptyLike(h, [N], acc);
  const dh = wantH ? emptyLike(h, [N, D], acc) : null;
  const dw = wantW ? emptyLike(w, [V, D], acc) : null;
  const zBuf = emptyLike(h, [chunk, V], acc);
  const [lse, dloss] = [emptyLike(h, [chunk], acc), full([chunk], 1 / count, { dtype: acc, backend: h.backendName })];
  for (let r0 = 0; r0 < N; r0 += chunk) {
    tidy(() => {
      const n = Math.min(chunk, N - r0);
      const [hc, tc, z] = [narrow(h, 0, r0, n), narrow(t, 0, r0, n), narrow(zBuf, 0, 0, n)];
      k.matmul(hc, wt, z, false);
      // soft-capping: logits c tanh(z / c), whose derivative is 1 - tanh²
      const th = o.softcap > 0 ? unary('tanh', div(z, o.softcap)) : null;
      const logits = th ? mul(th, o.softcap) : z;
      const [l, ls] = [narrow(lse, 0, 0, n), narrow(dloss, 0, 0, n)];
      k.crossEntropy(logits, tc, ce, narrow(rows, 0, r0, n), l);
      if (!wantH && !wantW) return;
      // the gradient overwrites z (the kernel reads each logit before writing its gradient); with
      // soft-capping z is dead once th holds tanh(z / c)
      let dz = z;
      k.crossEntropyBackward(logits, tc, l, ls, ce, dz);
      if (th) dz = mul(dz, sub(1, mul(th, th)));
      if (gemm) dz = to(dz, gemm);
      if (dh) k.matmul(dz, w, narrow(dh, 0, r0, n), false); // [n, V] @ [V, D]
      if (dw) k.matmul(transpose(dz, 0, 1), hc, dw, r0 > 0); // [V, n] @ [n, D], accumulated over chunks
    });
  }
  if (dw && N === 0) k.fill(dw, 0);
  const loss = tidy(() => (o.reduction === 'mean' ? div(sum(rows), count) : sum(rows)));
  for (const x of [h, w, t, wt, rows, zBuf, lse, dloss]) x?.dispose();
  return { loss, dh, dw };
}
