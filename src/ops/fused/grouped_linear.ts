// Grouped linear, the grouped GEMM of a mixture-of-experts layer (MegaBlocks, Gale et al. 2022;
// torch._grouped_mm): the rows of x are sorted by group and group g's rows go through its own
// weight, with offsets o (o_0 = 0, o_G = S) marking where each group starts:
//   y[o_g : o_g+1] = x[o_g : o_g+1] W_gᵀ              x [S, K], W_g [O, K] (Linear layout), y [S, O]
// It equals groupedLinearComposite (a linear per group, concatenated), the per-expert loop it
// replaces. Backward, per group g with rows x_g and their output gradient dy_g:
//   dx_g = dy_g W_g            dW_g = dy_gᵀ x_g   (zeros for a group with no rows)
// Every group's product goes to the backend as one matmulList call (one parallel pass over all
// experts); a backend without it runs matmul per group. Several weight sets over the same x
// (an expert's gate and up projections) share that one pass. Under k.autocast the products read
// bf16/fp16 values of float32 operands (a half x as it is; float32 weights rounded while packed
// where the backend can) and keep their float32 sums, or round
// them once to the half dtype with { halfOut: true } (autocastGrouped).
import { backendOf, withLayout } from '../../backend/index.js';
import type { MatmulItem, View } from '../../backend/kernels.js';
import { autocastDtype } from '../../tensor/autocast.js';
import { isFloat } from '../../tensor/dtype.js';
import { Layout, shapeStr } from '../../tensor/layout.js';
import { noGrad } from '../../tensor/grad_mode.js';
import { tidy } from '../../tensor/scope.js';
import type { Tensor } from '../../tensor/tensor.js';
import { emptyLike, inputs, needsGrad, record, save } from '../dispatch.js';
import { to } from '../elementwise.js';
import { cat } from '../indexing.js';
import { linear } from '../matmul.js';
import { contiguous, narrow } from '../view.js';

/** Rows [r0, r0 + n) of a contiguous 2-d view, or their transpose ([cols, n]). */
function rows(t: View, r0: number, n: number, transposed = false): View {
  const [, C] = t.layout.shape;
  const off = t.layout.offset + r0 * C;
  return withLayout(t, transposed ? new Layout([C, n], [1, C], off) : new Layout([n, C], [C, 1], off));
}

/** A 2-d weight [O, K] read as its transpose [K, O] (no copy). */
const transposed = (w: View): View => {
  const [O, K] = w.layout.shape;
  return withLayout(w, new Layout([K, O], [w.layout.strides[1], w.layout.strides[0]], w.layout.offset));
};

function runList(x: Tensor, items: MatmulItem[], accumulate: boolean): void {
  const k = backendOf(x).kernels;
  if (k.matmulList) k.matmulList(items, accumulate);
  else for (const it of items) k.matmul(it.a, it.b, it.out, accumulate);
}

/** Shapes and dtypes; under autocast (ac) x and the weights may each be float32 or ac's half dtype. */
function checkArgs(x: Tensor, sets: readonly (readonly Tensor[])[], offsets: readonly number[], ac: Tensor['dtype'] | null = null): void {
  if (x.ndim !== 2) throw new Error(`groupedLinear: x must be 2-d [rows, in], got ${shapeStr(x.shape)}`);
  const [S, K] = x.shape;
  const G = offsets.length - 1;
  if (G < 1 || offsets[0] !== 0 || offsets[G] !== S)
    throw new Error(`groupedLinear: offsets must run from 0 to the ${S} rows of x, got [${offsets.join(', ')}]`);
  for (let g = 0; g < G; g++)
    if (!Number.isInteger(offsets[g + 1]) || offsets[g + 1] < offsets[g])
      throw new Error(`groupedLinear: offsets must be non-decreasing integers, got [${offsets.join(', ')}]`);
  for (const [s, ws] of sets.entries()) {
    if (ws.length !== G) throw new Error(`groupedLinear: weight set ${s} has ${ws.length} weights for ${G} groups`);
    const O = ws[0].shape[0];
    for (const [g, w] of ws.entries()) {
      if (w.ndim !== 2 || w.shape[0] !== O || w.shape[1] !== K)
        throw new Error(`groupedLinear: weight ${g} of set ${s} must be [${O}, ${K}] (out, in), got ${shapeStr(w.shape)}`);
      if (w.dtype !== x.dtype && !ac) throw new Error(`groupedLinear: weight ${g} of set ${s} is ${w.dtype}, x is ${x.dtype}`);
    }
  }
  if (!isFloat(x.dtype)) throw new Error(`groupedLinear: x must be floating point, got ${x.dtype}`);
}

/** The tensors a weight set's products read: x and the weights as given, or their bf16/fp16 copies under autocast. */
interface Operands {
  x: Tensor;
  ws: readonly Tensor[];
}

/**
 * Records one weight set's output: dx through every group's W_g, dW_g = dy_gᵀ x_g. `inputs` are the
 * tensors the gradients belong to, `ops` the ones the GEMMs read (under autocast their half copies:
 * dy is cast to their dtype and dx, dW come out in the inputs' float32, from float32 sums).
 */
function recordSet(y: Tensor, inputs: Operands, ops: Operands, offsets: readonly number[]): Tensor {
  const xs = save(ops.x);
  const wsSaved = ops.ws.map(save);
  return record('groupedLinear', y, [inputs.x, ...inputs.ws], (g0) => {
    const gc = contiguous(g0);
    const g = gc.dtype === xs.dtype ? gc : to(gc, xs.dtype);
    const groups = offsets.length - 1;
    const dx = inputs.x.requiresGrad ? emptyLike(g, inputs.x.shape, inputs.x.dtype) : null;
    const dws = inputs.ws.map((w) => (w.requiresGrad ? emptyLike(g, w.shape, w.dtype) : null));
    // dx and every dW in one pass: all outputs are distinct
    const items: MatmulItem[] = [];
    for (let e = 0; e < groups; e++) {
      const [o, n] = [offsets[e], offsets[e + 1] - offsets[e]];
      if (dx && n > 0) items.push({ a: rows(g, o, n), b: wsSaved[e], out: rows(dx, o, n) });
      const dw = dws[e];
      if (dw) items.push({ a: rows(g, o, n, true), b: rows(xs, o, n), out: dw });
    }
    runList(g, items, false);
    for (const t of new Set([g, gc])) if (t !== g0) t.dispose();
    return [dx, ...dws];
  }, [xs, ...wsSaved]);
}

/** Every set's outputs [S, O_s] (of dtype outDtype) from one matmulList pass over the operands. */
function forwardPass(ops: { x: Tensor; sets: readonly (readonly Tensor[])[] }, offsets: readonly number[], outDtype: Tensor['dtype']): Tensor[] {
  const outs = ops.sets.map((ws) => emptyLike(ops.x, [ops.x.shape[0], ws[0].shape[0]], outDtype));
  const items: MatmulItem[] = [];
  ops.sets.forEach((ws, s) => {
    for (let e = 0; e < ws.length; e++) {
      const n = offsets[e + 1] - offsets[e];
      if (n > 0) items.push({ a: rows(ops.x, offsets[e], n), b: transposed(ws[e]), out: rows(outs[s], offsets[e], n) });
    }
  });
  runList(ops.x, items, false);
  return outs;
}

/** groupedLinears' options. */
export interface GroupedOptions {
  /**
   * Under k.autocast: round each output to the autocast dtype (PyTorch autocast's linear output)
   * instead of keeping the GEMMs' float32 sums. The rounding happens once, as the GEMM writes its
   * tile, and the output's gradient then arrives in that dtype, so an activation between two
   * grouped GEMMs (an expert's SiLU*up) reads and writes half rows and backward casts nothing.
   */
  halfOut?: boolean;
}

/**
 * Under autocast on a backend with matmulList: the GEMMs read bf16/fp16 copies of the float32
 * weights (rounded as the GEMM packs them on a halfMatmulFloatB backend, else cast first) and of x
 * unless it is already half, and write their float32 sums as the output, or those
 * sums rounded once to the half dtype with halfOut. Backward writes dx in x's own dtype and float32
 * dW straight from the GEMMs' float32 sums, never a half gradient cast back.
 */
function autocastGrouped(x: Tensor, sets: readonly (readonly Tensor[])[], offsets: readonly number[], half: Tensor['dtype'], halfOut: boolean): Tensor[] {
  const xc = contiguous(x);
  const xh = xc.dtype === half ? xc : noGrad(() => to(xc, half));
  // a float32 weight goes in as is where the GEMM rounds b while packing it (the same bits, no half copy per call)
  const floatB = backendOf(x).halfMatmulFloatB === true;
  const setsH = sets.map((ws) => ws.map((w) => (w.dtype === half || (floatB && w.dtype === 'float32') ? w : noGrad(() => to(w, half)))));
  const outs = forwardPass({ x: xh, sets: setsH }, offsets, halfOut ? half : 'float32');
  const res = sets.map((ws, s) => (needsGrad(x, ...ws) ? recordSet(outs[s], { x, ws }, { x: xh, ws: setsH[s] }, offsets) : outs[s]));
  // recordSet holds its own handles; the caller's tensors stay
  const given = new Set([x, ...sets.flat()]);
  for (const t of new Set([xc, xh, ...setsH.flat()])) if (!given.has(t)) t.dispose();
  return res;
}

/**
 * One grouped pass for several weight sets over the same sorted rows: out[s] = groupedLinear(x, sets[s], offsets).
 * Under k.autocast, float32 (or already half) x and float32 weights run as bf16/fp16 GEMMs with
 * float32 outputs, or half ones with opts.halfOut (autocastGrouped).
 * @example const [gate, up] = groupedLinears(xSorted, [gateWeights, upWeights], [0, 3, 3, 7]) // 3 experts
 */
export function groupedLinears(x: Tensor, sets: readonly (readonly Tensor[])[], offsets: readonly number[], opts: GroupedOptions = {}): Tensor[] {
  inputs('groupedLinear', x, ...sets.flat());
  const ac = autocastDtype();
  if (ac && isFloat(x.dtype) && (x.dtype !== ac || sets.some((ws) => ws.some((w) => w.dtype !== ac)))) {
    if (backendOf(x).kernels.matmulList && [x, ...sets.flat()].every((t) => t.dtype === 'float32' || t.dtype === ac)) {
      checkArgs(x, sets, offsets, ac);
      return autocastGrouped(x, sets, offsets, ac, opts.halfOut === true);
    }
    return tidy(() => groupedLinears(to(x, ac), sets.map((ws) => ws.map((w) => to(w, ac))), offsets));
  }
  checkArgs(x, sets, offsets);
  const xc = contiguous(x);
  const outs = forwardPass({ x: xc, sets }, offsets, xc.dtype);
  const res = sets.map((ws, s) => (needsGrad(xc, ...ws) ? recordSet(outs[s], { x: xc, ws }, { x: xc, ws }, offsets) : outs[s]));
  if (xc !== x) xc.dispose();
  return res;
}

/**
 * y [S, O]: the rows of x in [offsets[g], offsets[g+1]) times weights[g]ᵀ.
 * @example groupedLinear(xSorted, experts.map((e) => e.w1.weight), [0, 3, 3, 7])
 */
export const groupedLinear = (x: Tensor, weights: readonly Tensor[], offsets: readonly number[], opts: GroupedOptions = {}): Tensor =>
  groupedLinears(x, [weights], offsets, opts)[0];

/** The per-group loop groupedLinear equals (the reference its tests compare with). */
export function groupedLinearComposite(x: Tensor, weights: readonly Tensor[], offsets: readonly number[]): Tensor {
  return tidy(() => cat(weights.map((w, g) => linear(narrow(x, 0, offsets[g], offsets[g + 1] - offsets[g]), w)), 0));
}
