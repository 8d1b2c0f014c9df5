// Elementwise primitives: unary functions, broadcasting binary arithmetic and comparisons,
// where, and casts. Half-precision inputs compute in float32 (computeDType) and cast back; on a
// backend whose kernels take half operands (halfElementwise) the kernels do that themselves, with
// the same values and no float32 copies (saved tensors stay half).
import { backendOf, withLayout } from '../backend/index.js';
import type { ArithOp, CompareOp, UnaryOp } from '../backend/kernels.js';
import { type DType, computeDType, isFloat, isHalf, promoteTypes } from '../tensor/dtype.js';
import { broadcastShapes } from '../tensor/layout.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { full } from './creation.js';
import { emptyLike, inputs, needsGrad, record, save } from './dispatch.js';
import { sumToShape } from './reduce.js';
import { expand } from './view.js';

export type Operand = Tensor | number;

/** Casts to dtype (a copy; x itself viewed again when it already has that dtype). */
export function to(x: Tensor, dtype: DType): Tensor {
  inputs('to', x);
  if (x.dtype === dtype) return expand(x, x.shape);
  const out = emptyLike(x, x.shape, dtype);
  backendOf(x).kernels.copy(x, out);
  const src = x.dtype;
  if (!isFloat(dtype) || !isFloat(src)) return out; // integer results carry no gradient
  return record('to', out, [x], (g) => [to(g, src)]);
}

/** Runs fn on x upcast to its compute dtype, casting the result back (float16/bfloat16 -> float32). */
export function inCompute(x: Tensor, fn: (x: Tensor) => Tensor): Tensor {
  if (!isHalf(x.dtype)) return fn(x);
  const up = to(x, 'float32');
  const y = fn(up);
  const out = to(y, x.dtype);
  up.dispose();
  y.dispose();
  return out;
}

/** True when x is float16/bfloat16 on a backend whose kernels take it as it is (Backend.halfElementwise). */
export const halfDirect = (x: Tensor): boolean => isHalf(x.dtype) && backendOf(x).halfElementwise;

/**
 * inCompute, except that x is passed as it is where the backend's kernels take half operands
 * (they load into float32 and round once: the same values as the upcast, cast back).
 */
export const inKernelCompute = (x: Tensor, fn: (x: Tensor) => Tensor): Tensor => (halfDirect(x) ? fn(x) : inCompute(x, fn));

/** y = f(x) for one of the unary ops; p0/p1 parameterise pow_scalar and clamp. */
export function unary(op: UnaryOp, x: Tensor, p0 = 0, p1 = 0): Tensor {
  inputs(op, x);
  if (!isFloat(x.dtype) && op !== 'neg' && op !== 'abs' && op !== 'sign' && op !== 'clamp')
    return tidy(() => unary(op, to(x, 'float32'), p0, p1));
  return inKernelCompute(x, (xc) => {
    const out = emptyLike(xc);
    const k = backendOf(xc).kernels;
    k.unary(op, xc, out, p0, p1);
    if (!needsGrad(xc)) return out;
    const xs = save(xc);
    return record(op, out, [xc], (g) => {
      const dx = emptyLike(g, g.shape, xs.dtype);
      k.unaryGrad(op, xs, g, dx, p0, p1);
      return [dx];
    }, [xs]);
  });
}

function asTensor(v: Operand, like: Tensor): Tensor {
  if (typeof v !== 'number') return v;
  const dtype = !isFloat(like.dtype) && !Number.isInteger(v) ? 'float32' : like.dtype;
  return full([], v, { dtype, backend: like.backendName });
}

/** Broadcasts and casts both operands to the op's compute dtype; returns them and the result dtype. */
function prepare(op: string, a: Operand, b: Operand, trueDivide: boolean) {
  if (typeof a === 'number' && typeof b === 'number') throw new Error(`${op}: at least one operand must be a tensor`);
  const ta = asTensor(a, typeof b === 'number' ? (a as Tensor) : b);
  const tb = asTensor(b, ta);
  const backend = inputs(op, ta, tb);
  let dtype = promoteTypes(ta.dtype, tb.dtype);
  if (trueDivide && !isFloat(dtype)) dtype = 'float32';
  // two operands of one half dtype go to a halfElementwise backend's kernel as they are; an
  // integer or bool operand beside a half one is still upcast to float32 (exact there, not in half)
  const direct = isHalf(dtype) && backend.halfElementwise && ta.dtype === dtype && tb.dtype === dtype;
  const compute = direct ? dtype : computeDType(dtype === 'bool' || dtype === 'int8' || dtype === 'uint8' ? 'int32' : dtype);
  const shape = broadcastShapes(ta.shape, tb.shape, op);
  const temps = [ta !== a ? ta : null, tb !== b ? tb : null];
  const ca = ta.dtype === compute ? ta : to(ta, compute);
  const cb = tb.dtype === compute ? tb : to(tb, compute);
  return { ca, cb, dtype, shape, temps: [...temps, ca !== ta ? ca : null, cb !== tb ? cb : null] };
}

function disposeAll(ts: (Tensor | null)[]): void {
  for (const t of ts) t?.dispose();
}

/** The raw kernel call: out = a op b over broadcast views. */
function binaryKernel(op: ArithOp | CompareOp, a: Tensor, b: Tensor, shape: number[], dtype: DType): Tensor {
  const ea = a.layout.expand(shape);
  const eb = b.layout.expand(shape);
  const out = emptyLike(a, shape, dtype);
  backendOf(a).kernels.binary(op, withLayout(a, ea), withLayout(b, eb), out);
  return out;
}


/** out: the forward's result (div and pow read it; a call fetches or recomputes it). */
type Vjp = (g: Tensor, a: Tensor, b: Tensor, out: () => Tensor) => [Tensor | null, Tensor | null];

// d(a op b): gradients before reduction to each operand's shape.
const ARITH_VJP: Record<ArithOp, Vjp> = {
  add: (g) => [g, g],
  sub: (g) => [g, neg(g)],
  mul: (g, a, b) => [mul(g, b), mul(g, a)],
  div: (g, a, b, out) => [div(g, b), neg(div(mul(g, out()), b))],
  pow: (g, a, b, out) => [mul(mul(g, b), pow(a, sub(b, 1))), mul(mul(g, out()), unary('log', a))],
  maximum: (g, a, b) => minmaxVjp(g, a, b, 'gt'),
  minimum: (g, a, b) => minmaxVjp(g, a, b, 'lt'),
};

/** Gradient goes to the winning operand, split evenly on ties (PyTorch's rule). */
function minmaxVjp(g: Tensor, a: Tensor, b: Tensor, wins: 'gt' | 'lt'): [Tensor, Tensor] {
  const half = mul(g, 0.5);
  const aw = compare(wins, a, b);
  const eq = compare('eq', a, b);
  const ga = where(aw, g, where(eq, half, 0));
  const gb = where(aw, 0, where(eq, half, g));
  return [ga, gb];
}

/**
 * The VJP of a op b on half operands, equal bit for bit to the upcast path's (float32 operands,
 * gradients summed to shape in float32, then rounded): add/sub pass g on (negation is exact; the
 * half sum accumulates in float and rounds once), the others run in float32 on upcast copies, with
 * out recomputed in float32 rather than saved (the rounded half out would change the result).
 */
function halfArithVjp(op: ArithOp, g: Tensor, a: Tensor, b: Tensor, shape: number[]): (Tensor | null)[] {
  if (op === 'add' || op === 'sub') return [sumToShape(g, a.shape), sumToShape(op === 'add' ? g : neg(g), b.shape)];
  return tidy(() => {
    const [fg, fa, fb] = [to(g, 'float32'), to(a, 'float32'), to(b, 'float32')];
    const [ga, gb] = ARITH_VJP[op](fg, fa, fb, () => binaryKernel(op, fa, fb, shape, 'float32'));
    return [ga && to(sumToShape(ga, a.shape), a.dtype), gb && to(sumToShape(gb, b.shape), b.dtype)];
  });
}

/** a op b with broadcasting and type promotion. */
export function arith(op: ArithOp, a: Operand, b: Operand): Tensor {
  const { ca, cb, dtype, shape, temps } = prepare(op, a, b, op === 'div');
  const compute = ca.dtype;
  let out = binaryKernel(op, ca, cb, shape, compute);
  if (isFloat(compute) && needsGrad(ca, cb)) {
    const [sa, sb] = [save(ca), save(cb)];
    const [shapeA, shapeB] = [ca.shape, cb.shape];
    if (isHalf(compute)) {
      out = record(op, out, [ca, cb], (g) => halfArithVjp(op, g, sa, sb, shape), [sa, sb]);
    } else {
      const so = save(out);
      out = record(op, out, [ca, cb], (g) => {
        const [ga, gb] = ARITH_VJP[op](g, sa, sb, () => so);
        return [ga && sumToShape(ga, shapeA), gb && sumToShape(gb, shapeB)];
      }, [sa, sb, so]);
    }
  }
  if (dtype !== compute) {
    const cast = to(out, dtype);
    out.dispose();
    out = cast;
  }
  disposeAll(temps);
  return out;
}

/** Elementwise comparison giving a bool tensor (no gradient). */
export function compare(op: CompareOp, a: Operand, b: Operand): Tensor {
  const { ca, cb, shape, temps } = prepare(op, a, b, false);
  const out = binaryKernel(op, ca, cb, shape, 'bool');
  disposeAll(temps);
  return out;
}

export const add = (a: Operand, b: Operand): Tensor => arith('add', a, b);
export const sub = (a: Operand, b: Operand): Tensor => arith('sub', a, b);
export const mul = (a: Operand, b: Operand): Tensor => arith('mul', a, b);
export const div = (a: Operand, b: Operand): Tensor => arith('div', a, b);
export const maximum = (a: Operand, b: Operand): Tensor => arith('maximum', a, b);
export const minimum = (a: Operand, b: Operand): Tensor => arith('minimum', a, b);
export const neg = (x: Tensor): Tensor => unary('neg', x);

/** x ** p; a number exponent uses the pow_scalar kernel. */
export function pow(x: Operand, p: Operand): Tensor {
  if (typeof p === 'number' && typeof x !== 'number') return unary('pow_scalar', x, p);
  return arith('pow', x, p);
}

export const clamp = (x: Tensor, min = -Infinity, max = Infinity): Tensor => unary('clamp', x, min, max);

/** cond ? a : b elementwise with broadcasting (torch.where). */
export function where(cond: Tensor, a: Operand, b: Operand): Tensor {
  const like = typeof a !== 'number' ? a : typeof b !== 'number' ? b : null;
  const ta = typeof a === 'number' ? full([], a, { dtype: like?.dtype ?? 'float32', backend: cond.backendName }) : a;
  const tb = typeof b === 'number' ? full([], b, { dtype: ta.dtype, backend: cond.backendName }) : b;
  inputs('where', cond, ta, tb);
  if (cond.dtype !== 'bool' && cond.dtype !== 'uint8') throw new Error(`where: condition must be bool, got ${cond.dtype}`);
  const dtype = promoteTypes(ta.dtype, tb.dtype);
  const ca = ta.dtype === dtype ? ta : to(ta, dtype);
  const cb = tb.dtype === dtype ? tb : to(tb, dtype);
  const shape = broadcastShapes(broadcastShapes(cond.shape, ca.shape, 'where'), cb.shape, 'where');
  const out = emptyLike(ca, shape, dtype);
  backendOf(cond).kernels.where(
    withLayout(cond, cond.layout.expand(shape)), withLayout(ca, ca.layout.expand(shape)),
    withLayout(cb, cb.layout.expand(shape)), out,
  );
  let result = out;
  if (isFloat(dtype) && needsGrad(ca, cb)) {
    const sc = save(cond);
    const [shapeA, shapeB] = [ca.shape, cb.shape];
    result = record('where', out, [ca, cb], (g) => [
      sumToShape(where(sc, g, 0), shapeA),
      sumToShape(where(sc, 0, g), shapeB),
    ], [sc]);
  }
  disposeAll([ta !== a ? ta : null, tb !== b ? tb : null, ca !== ta ? ca : null, cb !== tb ? cb : null]);
  return result;
}

/** x with value wherever mask is true (torch.masked_fill). */
export const maskedFill = (x: Tensor, mask: Tensor, value: number): Tensor => where(mask, value, x);

/** Elementwise a || b of bool tensors. */
export function logicalOr(a: Tensor, b: Tensor): Tensor {
  return tidy(() => compare('ne', add(to(a, 'int32'), to(b, 'int32')), 0));
}

/** Elementwise a && b of bool tensors. */
export function logicalAnd(a: Tensor, b: Tensor): Tensor {
  return tidy(() => compare('ne', mul(to(a, 'int32'), to(b, 'int32')), 0));
}

/** Elementwise !a of a bool tensor. */
export const logicalNot = (a: Tensor): Tensor => compare('eq', a, 0);
