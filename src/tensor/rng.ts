// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011, as in PyTorch's CUDA RNG).
// Element i of a draw depends only on (seed, counter, i), so the reference and native backends
// produce identical uniforms, and a fused kernel can regenerate a dropout mask in backward.
//   uniform(i): counter base + floor(i/4), word i%4, u = (w >>> 8) * 2^-24 in [0, 1)
//   normal(i):  counter base + floor(i/2), words 2(i%2) and 2(i%2)+1, Box-Muller (cos branch)

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

function mulhi(a: number, b: number): number {
  const a0 = a & 0xffff;
  const a1 = a >>> 16;
  const b0 = b & 0xffff;
  const b1 = b >>> 16;
  const t = a1 * b0 + ((a0 * b0) >>> 16);
  const w1 = (t % 65536) + a0 * b1;
  return (a1 * b1 + Math.floor(t / 65536) + Math.floor(w1 / 65536)) >>> 0;
}

/** Philox4x32-10 block: 4 words for (key = seed, counter). Writes into out. */
export function philox(seedLo: number, seedHi: number, ctrLo: number, ctrHi: number, out: Uint32Array): void {
  let c0 = ctrLo >>> 0;
  let c1 = ctrHi >>> 0;
  let c2 = 0;
  let c3 = 0;
  let k0 = seedLo >>> 0;
  let k1 = seedHi >>> 0;
  for (let r = 0; r < 10; r++) {
    const hi0 = mulhi(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

export type RandomDist = 'uniform' | 'normal';

/** Counters one draw of n elements consumes. */
export const countersFor = (dist: RandomDist, n: number): number => Math.ceil(n / (dist === 'uniform' ? 4 : 2));

export const TWO_POW_32 = 4294967296;
const INV_2_24 = 1 / 16777216;

/** Fills out[i] with element i of a draw (the definition both backends implement). */
export function fillRandom(out: { length: number; [i: number]: number }, dist: RandomDist, seed: number, counter: number): void {
  const words = new Uint32Array(4);
  const seedLo = seed % TWO_POW_32;
  const seedHi = Math.floor(seed / TWO_POW_32);
  const per = dist === 'uniform' ? 4 : 2;
  for (let i = 0; i < out.length; i += per) {
    const c = counter + i / per;
    philox(seedLo, seedHi, c % TWO_POW_32, Math.floor(c / TWO_POW_32), words);
    for (let j = 0; j < per && i + j < out.length; j++) {
      if (dist === 'uniform') out[i + j] = (words[j] >>> 8) * INV_2_24;
      else {
        const u1 = ((words[2 * j] >>> 8) + 1) * INV_2_24;
        const u2 = (words[2 * j + 1] >>> 8) * INV_2_24;
        out[i + j] = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
      }
    }
  }
}

/** A seed and a counter; each draw takes the next counters (torch.Generator's role). */
export class Generator {
  counter = 0;
  constructor(public seed = 0) {}

  manualSeed(seed: number): this {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`manualSeed: seed must be a non-negative integer, got ${seed}`);
    this.seed = seed;
    this.counter = 0;
    return this;
  }

  /** Reserves the counters for a draw of n elements and returns the first. */
  next(dist: RandomDist, n: number): number {
    const c = this.counter;
    this.counter += countersFor(dist, n);
    return c;
  }

  getState(): { seed: number; counter: number } {
    return { seed: this.seed, counter: this.counter };
  }
  setState(s: { seed: number; counter: number }): void {
    this.seed = s.seed;
    this.counter = s.counter;
  }
}

export const defaultGenerator = new Generator(0);
export const manualSeed = (seed: number): Generator => defaultGenerator.manualSeed(seed);
