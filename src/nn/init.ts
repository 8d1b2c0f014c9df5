// Parameter initialisers drawn from the seeded generator (PyTorch's defaults by name); with
// backend 'meta' they make storage-less tensors instead, for lazy construction before loading.
import { full, rand, randn, zeros, ones } from '../ops/creation.js';
import { backendOf, withLayout } from '../backend/index.js';
import { add, mul } from '../ops/elementwise.js';
import type { DType } from '../tensor/dtype.js';
import { noGrad } from '../tensor/grad_mode.js';
import { type Generator, defaultGenerator } from '../tensor/rng.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { isMeta, metaTensor } from '../tensor/meta.js';

export interface InitOpts {
  dtype?: DType;
  /** a backend name, or 'meta': shape and dtype only, no storage and no random draws (tensor/meta.ts) */
  backend?: string;
  generator?: Generator;
}

/** The lazy case every initialiser shares: a meta tensor when asked for one, else null. */
const lazy = (shape: number[], o: InitOpts): Tensor | null => (o.backend === 'meta' ? metaTensor(shape, o.dtype ?? 'float32') : null);

/** U(-bound, bound): nn.Linear's default with bound = 1/sqrt(fan_in) (kaiming_uniform, a = sqrt(5)). */
export function uniform(shape: number[], bound: number, o: InitOpts = {}): Tensor {
  return lazy(shape, o) ?? tidy(() => noGrad(() => add(mul(rand(shape, { ...o, generator: o.generator ?? defaultGenerator }), 2 * bound), -bound)));
}

/** N(0, std^2): nn.Embedding's default (std 1) and HF's initializer_range. */
export function normal(shape: number[], std: number, o: InitOpts = {}): Tensor {
  return lazy(shape, o) ?? tidy(() => noGrad(() => mul(randn(shape, { ...o, generator: o.generator ?? defaultGenerator }), std)));
}

export const zerosInit = (shape: number[], o: InitOpts = {}): Tensor => lazy(shape, o) ?? zeros(shape, o);
export const onesInit = (shape: number[], o: InitOpts = {}): Tensor => lazy(shape, o) ?? ones(shape, o);

/**
 * Refills t in place with N(0, std^2) draws from the generator (HF's _init_weights for
 * Linear/Embedding); a meta tensor has nothing to fill and is returned as is, drawing nothing.
 */
export function normal_(t: Tensor, std: number, generator: Generator = defaultGenerator): Tensor {
  if (isMeta(t)) return t;
  const k = backendOf(t).kernels;
  k.random(t, 'normal', generator.seed, generator.next('normal', t.numel));
  const s = full([], std, { dtype: t.dtype, backend: t.backendName });
  k.binary('mul', t, withLayout(s, s.layout.expand(t.shape)), t);
  s.dispose();
  return t;
}
