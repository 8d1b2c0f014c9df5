// Seeded permutations for shuffling and the eval split. An order is a pure function of (seed,
// stream, epoch): no hidden state, so a resumed run recomputes exactly the order it was in.
// Generator: xoshiro128** (Blackman & Vigna) seeded through splitmix32, 32-bit integer maths only.

/** splitmix32 step: a well-mixed 32-bit word from a counter. */
function splitmix32(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  x = Math.imul(x ^ (x >>> 16), 0x21f0aaad);
  x = Math.imul(x ^ (x >>> 15), 0x735a2d97);
  return (x ^ (x >>> 15)) >>> 0;
}

/**
 * A small deterministic random source (xoshiro128**) keyed by integers.
 * @example
 * const r = new SeededRandom(42, 1, 0);
 * r.below(10) // the same integer in [0, 10) on every run
 */
export class SeededRandom {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  /** keys: any finite numbers (a seed, a stream tag, an epoch); each contributes all its bits. */
  constructor(...keys: number[]) {
    let h = 0x12345678;
    for (const k of keys) {
      if (!Number.isFinite(k)) throw new Error(`SeededRandom: seed parts must be finite numbers, got ${k}`);
      const lo = k >>> 0, hi = Math.floor(k / 4294967296) >>> 0;
      h = splitmix32(h ^ lo);
      h = splitmix32(h ^ hi);
    }
    this.s0 = splitmix32(h);
    this.s1 = splitmix32(this.s0);
    this.s2 = splitmix32(this.s1);
    this.s3 = splitmix32(this.s2);
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1; // the one forbidden state
  }

  /** The next 32 random bits as an unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** A uniform integer in [0, n) for n <= 2^32, without modulo bias (rejection). */
  below(n: number): number {
    if (!(n >= 1 && n <= 4294967296 && Number.isInteger(n))) throw new RangeError(`SeededRandom.below: n must be an integer in [1, 2^32], got ${n}`);
    const limit = 4294967296 - (4294967296 % n);
    for (;;) {
      const x = this.nextU32();
      if (x < limit) return x % n;
    }
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/**
 * A seeded Fisher-Yates permutation of 0..n-1.
 * @example
 * permutation(5, new SeededRandom(7, 0)) // e.g. Int32Array [3, 0, 4, 1, 2], the same every run
 */
export function permutation(n: number, rng: SeededRandom): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.below(i + 1);
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

/** Stream tags keep the split and each epoch's shuffle independent under one seed. */
export const STREAM_SPLIT = 1;
export const STREAM_EPOCH = 2;
