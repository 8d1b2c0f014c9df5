// Reference creation, copy, unary, binary and where kernels over dense float64 values.
import { fillRandom } from '../../tensor/rng.js';
import type { Kernels } from '../kernels.js';
import { ARITH_MATH, COMPARE_MATH, UNARY_MATH } from './math.js';
import { load, store } from './storage.js';

type K<N extends keyof Kernels> = Kernels[N];

export const fill: K<'fill'> = (out, value) => store(out, new Float64Array(out.layout.numel).fill(value));

export const arange: K<'arange'> = (out, start, step) =>
  store(out, Float64Array.from({ length: out.layout.numel }, (_, i) => start + i * step));

export const random: K<'random'> = (out, dist, seed, counter) => {
  const v = new Float64Array(out.layout.numel);
  fillRandom(v, dist, seed, counter);
  store(out, v);
};

export const copy: K<'copy'> = (src, dst) => store(dst, load(src));

export const unary: K<'unary'> = (op, x, out, p0, p1) => {
  const { f } = UNARY_MATH[op];
  store(out, load(x).map((v) => f(v, p0, p1)));
};

export const unaryGrad: K<'unaryGrad'> = (op, x, dy, dx, p0, p1) => {
  const { df } = UNARY_MATH[op];
  const g = load(dy);
  store(dx, load(x).map((v, i) => g[i] * df(v, p0, p1)));
};

export const binary: K<'binary'> = (op, a, b, out) => {
  const av = load(a);
  const bv = load(b);
  if (op in ARITH_MATH) {
    const f = ARITH_MATH[op as keyof typeof ARITH_MATH];
    store(out, av.map((x, i) => f(x, bv[i])));
  } else {
    const f = COMPARE_MATH[op as keyof typeof COMPARE_MATH];
    store(out, av.map((x, i) => (f(x, bv[i]) ? 1 : 0)));
  }
};

export const where: K<'where'> = (cond, a, b, out) => {
  const c = load(cond);
  const av = load(a);
  const bv = load(b);
  store(out, c.map((x, i) => (x !== 0 ? av[i] : bv[i])));
};
