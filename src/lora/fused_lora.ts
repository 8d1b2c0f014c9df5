// Fused LoRA projections: one autograd node with a hand-written backward (Unsloth's fast_lora, llm.c's
// forward/backward pairs) for a group of LoRA layers that read the same x (q/k/v, gate/up; a group of one
// is a plain LoRA linear). Equals loraComposite per projection: y = x Wᵀ + b + s (drop(x) Aᵀ) Bᵀ.
// Forward, for N rows of x:
//   xs = X [A_1; ...; A_n]ᵀ · s   [N, Σr]   one GEMM per distinct adapter input X (x itself, or x under a
//                                          projection's own dropout mask), scaled per column (s_p)
//   y_p = x W_pᵀ + b_p,  then  y_p += xs_p B_pᵀ  through the GEMM's accumulate flag (no pass over [N, out])
// Backward, with g_p = dL/dy_p and gB_p = s_p g_p B_p [N, r_p] (built transposed, [Σr, N], so each
// projection's rows are contiguous GEMM outputs):
//   dB_p = g_pᵀ xs_p,   dA = gBᵀ X  (one GEMM per X, split by rows),   db_p = Σ_rows g_p,
//   dx = Σ_p g_p W_p + gB [A_1; ...]  accumulated into one buffer (a dropout mask m/(1-p) multiplies the
//   adapter part of a dropped input's term).
// Saved: x and xs (the dropout mask is regenerated from its Philox counter). ΔW = BA is never formed and W
// never gets a gradient. Half-precision x computes in float32 and rounds its outputs back, except on a
// backend whose GEMM takes half operands (halfMatmul), where the products run in x's dtype.
import { backendOf } from '../backend/index.js';
import { autocast, autocastDtype } from '../tensor/autocast.js';
import { type DType, isHalf } from '../tensor/dtype.js';
import { isGradEnabled, noGrad } from '../tensor/grad_mode.js';
import { shapeStr } from '../tensor/layout.js';
import { type Generator, defaultGenerator } from '../tensor/rng.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { empty, emptyLike, inputs, record, save } from '../ops/dispatch.js';
import { add, compare, mul, to, where } from '../ops/elementwise.js';
import { cat } from '../ops/indexing.js';
import { linear } from '../ops/matmul.js';
import { sumToShape } from '../ops/reduce.js';
import { tensor, zeros } from '../ops/creation.js';
import { dropout } from '../ops/attention.js';
import { contiguous, expand, narrow, reshape, transpose } from '../ops/view.js';
import { type FrozenLinear, Linear } from '../nn/layers.js';
import { recordMulti } from './multi_output.js';

/** A frozen base: the two products for the fused op, forward (with autograd for x) for the composite. */
export type FrozenBase = FrozenLinear & { forward(x: Tensor): Tensor };

/** One LoRA projection: its frozen base and one adapter. */
export interface LoraProjection {
  base: FrozenBase;
  /** lora_A [r, in] */
  A: Tensor;
  /** lora_B [out, r] */
  B: Tensor;
  scaling: number;
  /** dropout probability on the adapter's input (applied only when training) */
  dropout: number;
}

export interface LoraCallOptions {
  training?: boolean;
  generator?: Generator;
  /**
   * x can be rebuilt from `from` (tensors some other op saves anyway, e.g. the gate and up a
   * SwiGLU keeps): backward holds those and calls fn for x instead of keeping x alive, as
   * Unsloth does for down_proj's input. fn runs without autograd and must return x exactly.
   */
  recompute?: { from: Tensor[]; fn: (from: Tensor[]) => Tensor };
}

/**
 * The definition the fused op equals: base(x) + s B(A(dropout(x))) from primitives.
 * @example const y = loraComposite(x, { base, A, B, scaling: 2, dropout: 0 })
 */
export function loraComposite(x: Tensor, p: LoraProjection, opts: LoraCallOptions = {}): Tensor {
  return tidy(() => {
    const base = p.base.forward(x);
    const h = p.dropout > 0 ? dropout(x, p.dropout, opts.training ?? true, opts.generator) : x;
    return add(base, mul(linear(linear(h, p.A), p.B), p.scaling));
  });
}

/**
 * y = base(x) + s (drop(x) Aᵀ) Bᵀ as one node (see the file comment for the backward).
 * @example const y = loraLinear(x, { base: layer, A, B, scaling: 2, dropout: 0 })
 */
export function loraLinear(x: Tensor, p: LoraProjection, opts: LoraCallOptions = {}): Tensor {
  return loraLinearGroup(x, [p], opts)[0];
}

/** One segment of the stacked A product: the projections whose adapter reads the same input. */
interface Segment {
  members: number[];
  /** dropout probability of the input (0: x itself) and the Philox counter of its mask */
  p: number;
  counter: number;
}

function check(x: Tensor, ps: readonly LoraProjection[]): void {
  if (!ps.length) throw new Error('loraLinearGroup: needs at least one projection');
  const inF = x.shape[x.ndim - 1];
  ps.forEach(({ base, A, B }, i) => {
    const what = `loraLinear (projection ${i}: ${base.outFeatures} x ${base.inFeatures})`;
    if (x.ndim < 1 || inF !== base.inFeatures) throw new Error(`${what}: input ${shapeStr(x.shape)} does not end in ${base.inFeatures}`);
    if (A.ndim !== 2 || A.shape[1] !== base.inFeatures) throw new Error(`${what}: lora_A ${shapeStr(A.shape)} must be [r, ${base.inFeatures}]`);
    if (B.ndim !== 2 || B.shape[0] !== base.outFeatures || B.shape[1] !== A.shape[0])
      throw new Error(`${what}: lora_B ${shapeStr(B.shape)} must be [${base.outFeatures}, ${A.shape[0]}]`);
    if (base instanceof Linear && base.weight.requiresGrad && isGradEnabled())
      throw new Error(`${what}: the base weight requires grad, but the fused LoRA op never computes a base weight gradient (freeze it, or merge the adapter)`);
  });
}

/**
 * Several LoRA projections of one x (q/k/v or gate/up) in one pass: returns [..., out_p] per projection.
 * @example const [q, k, v] = loraLinearGroup(x, [qp, kp, vp])
 */
export function loraLinearGroup(x: Tensor, ps: readonly LoraProjection[], opts: LoraCallOptions = {}): Tensor[] {
  inputs('loraLinear', x, ...ps.flatMap((p) => [p.A, p.B, p.base.bias]));
  check(x, ps);
  const ac = autocastDtype();
  if (ac && x.dtype === 'float32') return tidy(() => fusedGroup(to(x, ac), ps, opts));
  return fusedGroup(x, ps, opts);
}

/** x Wᵀ (+ b) for a frozen base, written straight by the GEMM when the base is a plain Linear of x's dtype. */
function baseForward(base: FrozenLinear, x: Tensor): Tensor {
  const N = x.shape[0];
  if (base instanceof Linear && base.weight.dtype === x.dtype) {
    const y = emptyLike(x, [N, base.outFeatures]);
    const b = base.bias;
    if (b) backendOf(x).kernels.copy(expand(cast(b, x.dtype), [N, base.outFeatures]), y);
    backendOf(x).kernels.matmul(x, transpose(base.weight), y, b !== null);
    return y;
  }
  let y = base.applyWeight(x);
  if (y.dtype !== x.dtype) y = to(y, x.dtype);
  y = contiguous(base.bias ? add(y, base.bias.dtype === x.dtype ? base.bias : to(base.bias, x.dtype)) : y);
  return y;
}

/** dx (+)= g W for a frozen base; returns the buffer (a new one when dx is null). */
function baseBackward(base: FrozenLinear, g: Tensor, dx: Tensor | null): Tensor {
  const k = backendOf(g).kernels;
  if (base instanceof Linear && base.weight.dtype === g.dtype) {
    const out = dx ?? emptyLike(g, [g.shape[0], base.inFeatures]);
    k.matmul(g, base.weight, out, dx !== null);
    return out;
  }
  let t = base.applyWeightTransposed(g);
  if (t.dtype !== g.dtype) t = to(t, g.dtype);
  if (!dx) return contiguous(t);
  addInto(dx, t);
  return dx;
}

/**
 * dst += t in place (same index in and out: safe). A half dst on a backend whose binary kernel
 * takes no half operands (the CPU's, where halfMatmul still runs this path in half) adds through
 * the op, in float32, rounded once: what a halfElementwise kernel computes.
 */
function addInto(dst: Tensor, t: Tensor): void {
  const b = backendOf(dst);
  if (isHalf(dst.dtype) && !b.halfElementwise) tidy(() => b.kernels.copy(add(dst, t), dst));
  else b.kernels.binary('add', dst, t, dst);
}

/** x with the inverted-dropout mask of (seed, counter), exactly as dropout() draws it. */
function dropped(x: Tensor, p: number, seed: number, counter: number): Tensor {
  const u = empty(x.shape, 'float32', { backend: x.backendName });
  backendOf(x).kernels.random(u, 'uniform', seed, counter);
  return where(compare('ge', u, p), mul(x, 1 / (1 - p)), 0);
}

const cast = (t: Tensor, dtype: DType): Tensor => (t.dtype === dtype ? t : to(t, dtype));

function fusedGroup(x: Tensor, ps: readonly LoraProjection[], opts: LoraCallOptions): Tensor[] {
  const gen = opts.generator ?? defaultGenerator;
  const training = opts.training ?? true;
  const lead = x.shape.slice(0, -1);
  const inF = x.shape[x.ndim - 1];
  // compute dtype: half inputs compute in float32, except where the GEMM takes half operands itself
  // (halfMatmul: a GPU, or the CPU's native bf16/fp16 GEMM), which runs the products in the half
  // dtype and writes the adapters' gradients in float32
  const gpuHalf = isHalf(x.dtype) && backendOf(x).halfMatmul;
  const cd: DType = isHalf(x.dtype) && !gpuHalf ? 'float32' : x.dtype;
  const gradDtype: DType = gpuHalf ? 'float32' : cd;
  // segments: the undropped projections share x; each dropped one draws its own mask, in projection order
  const shared: Segment = { members: [], p: 0, counter: 0 };
  const segs: Segment[] = [shared];
  ps.forEach((p, i) => {
    if (training && p.dropout > 0) segs.push({ members: [i], p: p.dropout, counter: gen.next('uniform', x.numel) });
    else shared.members.push(i);
  });
  if (!shared.members.length) segs.shift();
  const seed = gen.seed;
  const ranks = ps.map((p) => p.A.shape[0]);
  const offsetIn = (s: Segment, i: number): number => s.members.slice(0, s.members.indexOf(i)).reduce((a, m) => a + ranks[m], 0);

  const fwd = autocast(null, () => noGrad(() => tidy(() => {
    const xc = cast(reshape(contiguous(x), [-1, inF]), cd); // [N, in]
    const N = xc.shape[0];
    const k = backendOf(xc).kernels;
    const stacks = segs.map((s) => {
      const A = stackA(s, ps.map((p) => p.A), cd);
      const X = s.p > 0 ? dropped(xc, s.p, seed, s.counter) : xc;
      const xa = emptyLike(xc, [N, A.shape[0]]);
      k.matmul(X, transpose(A), xa, false);
      const scales = s.members.flatMap((m) => Array<number>(ranks[m]).fill(ps[m].scaling));
      const xs = s.members.every((m) => ps[m].scaling === ps[s.members[0]].scaling)
        ? mul(xa, scales[0])
        : mul(xa, tensor(scales, { dtype: cd, backend: xc.backendName }));
      return { xs, svec: scales };
    });
    const ys = ps.map((p, i) => {
      const y = baseForward(p.base, xc);
      const si = segs.findIndex((s) => s.members.includes(i));
      const xsP = narrow(stacks[si].xs, 1, offsetIn(segs[si], i), ranks[i]);
      k.matmul(xsP, transpose(cast(p.B, cd)), y, true);
      return reshape(cast(y, x.dtype), [...lead, p.base.outFeatures]);
    });
    return { ys, stacks };
  })));

  // saved: x, xs per segment, and handles on the adapter weights (no new memory)
  const ins = ps.flatMap((p) => [p.A, p.B, p.base.bias]);
  const rebuild = opts.recompute ? { from: opts.recompute.from.map(save), fn: opts.recompute.fn } : null;
  const xS = rebuild ? null : save(x);
  const stS = fwd.stacks.map((s) => ({ xs: save(s.xs), svec: s.svec }));
  const aS = ps.map((p) => save(p.A));
  const bS = ps.map((p) => save(p.B));
  const saved = [...(xS ? [xS] : rebuild!.from), ...stS.map((s) => s.xs), ...aS, ...bS];
  for (const s of fwd.stacks) s.xs.dispose();

  /** The gradients of [x, A_1, B_1, b_1, A_2, ...] from the outputs' gradients (undefined: output unused). */
  const backward = (gs: (Tensor | undefined)[]): (Tensor | null)[] => autocast(null, () => {
    const xr = xS ?? noGrad(() => rebuild!.fn(rebuild!.from));
    const xc = cast(reshape(contiguous(xr), [-1, inF]), cd);
    const N = xc.shape[0];
    const k = backendOf(xc).kernels;
    const g2 = gs.map((g, i) => (g ? cast(reshape(contiguous(g), [N, ps[i].base.outFeatures]), cd) : null));
    const grads: (Tensor | null)[] = [null, ...ps.flatMap(() => [null, null, null])];
    let dx: Tensor | null = null;
    if (x.requiresGrad) for (const [i, g] of g2.entries()) if (g) dx = baseBackward(ps[i].base, g, dx);
    segs.forEach((s, j) => {
      const { xs, svec } = stS[j];
      const R = xs.shape[1];
      const gBT = emptyLike(xc, [R, N]); // rows of projection m: s_m (g_m B_m)ᵀ
      for (const m of s.members) {
        const rows = narrow(gBT, 0, offsetIn(s, m), ranks[m]);
        const g = g2[m];
        if (!g) {
          k.fill(rows, 0);
          continue;
        }
        k.matmul(transpose(cast(bS[m], cd)), transpose(g), rows, false);
        const xsP = narrow(xs, 1, offsetIn(s, m), ranks[m]);
        if (ps[m].B.requiresGrad) grads[2 + 3 * m] = cast(linearGrad(k, g, xsP, gradDtype), ps[m].B.dtype);
        const b = ps[m].base.bias;
        if (b?.requiresGrad) grads[3 + 3 * m] = cast(sumToShape(g, b.shape), b.dtype);
      }
      const gBs = svec.every((v) => v === svec[0]) ? mul(gBT, svec[0]) : mul(gBT, reshape(tensor(svec, { dtype: cd, backend: xc.backendName }), [R, 1]));
      const X = s.p > 0 ? dropped(xc, s.p, seed, s.counter) : xc;
      if (s.members.some((m) => ps[m].A.requiresGrad)) {
        const dA = emptyLike(xc, [R, inF], gradDtype);
        k.matmul(gBs, X, dA, false);
        for (const m of s.members)
          if (g2[m] && ps[m].A.requiresGrad) grads[1 + 3 * m] = cast(contiguous(narrow(dA, 0, offsetIn(s, m), ranks[m])), ps[m].A.dtype);
      }
      if (!x.requiresGrad) return;
      dx ??= zeros([N, inF], { dtype: xc.dtype, backend: xc.backendName });
      const A = stackA(s, aS, cd);
      if (s.p === 0) k.matmul(transpose(gBs), A, dx, true);
      else {
        const t = emptyLike(xc, [N, inF]);
        k.matmul(transpose(gBs), A, t, false);
        const u = empty([N, inF], 'float32', { backend: xc.backendName });
        k.random(u, 'uniform', seed, s.counter);
        addInto(dx, where(compare('ge', u, s.p), mul(t, 1 / (1 - s.p)), 0));
      }
    });
    if (dx) grads[0] = reshape(cast(dx, x.dtype), x.shape);
    return grads;
  });

  const outs = fwd.ys;
  if (outs.length === 1) return [record('loraLinear', outs[0], [x, ...ins], (g) => backward([g]), saved)];
  return recordMulti('loraLinearGroup', outs, [x, ...ins], backward, saved);
}

/** [A_m; ...] over a segment's members, contiguous [Σr, in] in the compute dtype. */
function stackA(s: Segment, As: readonly Tensor[], cd: DType): Tensor {
  return s.members.length === 1 ? contiguous(cast(As[s.members[0]], cd)) : cat(s.members.map((m) => cast(As[m], cd)), 0);
}

/** gᵀ xs: [out, N] x [N, r] -> [out, r] (in dtype: float32 from half operands where the GEMM can) */
function linearGrad(k: ReturnType<typeof backendOf>['kernels'], g: Tensor, xs: Tensor, dtype: DType): Tensor {
  const out = emptyLike(g, [g.shape[1], xs.shape[1]], dtype);
  k.matmul(transpose(g), xs, out, false);
  return out;
}
