// The attention cases the kernel tests share (kernels_attention.test.ts in float32,
// kernels_attention_half.test.ts in bfloat16 / float16): q, k, v (and the upstream gradient) as
// the same values on a device and on the float64 reference backend, masks of every kind, and one
// forward + backward through the public op compared element by element.
import * as k from '../../src/index.js';
import type { Device } from '../devices.js';
import { assertClose, seeded } from '../helpers.js';

export interface Pair {
  c: k.Tensor;
  r: k.Tensor;
}

/**
 * The same values as a leaf of `dtype` on the device and a float64 leaf on ref: float32-rounded,
 * then (for a 16-bit dtype) rounded again by the device, the reference taking the rounded values.
 */
export function pair(device: Device, shape: number[], seed: number, lo = -1, hi = 1, grad = true, dtype: k.DType = 'float32'): Pair {
  const f32 = Float32Array.from(seeded(shape.reduce((a, b) => a * b, 1), seed, lo, hi));
  const c = k.tensor(f32, { shape, dtype, backend: device, requiresGrad: grad });
  const vals = dtype === 'float32' ? f32 : c.toFloat32Array();
  return { c, r: k.tensor(Float64Array.from(vals), { shape, dtype: 'float64', backend: 'ref', requiresGrad: grad }) };
}

export const dispose = (...ps: (Pair | null | undefined)[]): void => {
  for (const p of ps) {
    if (!p) continue;
    for (const t of [p.c, p.r]) {
      t.zeroGrad();
      t.dispose();
    }
  }
};

export interface Case {
  B?: number;
  H?: number;
  Hkv?: number;
  Tq: number;
  Tk?: number;
  hd: number;
  hdv?: number;
  causal?: boolean;
  window?: number;
  softcap?: number;
  scale?: number;
  dropout?: number;
  /** mask kind: additive padding [B,1,1,Tk], full additive [B,H,Tq,Tk] (or a transposed view of one),
   * per-head [1,H,Tq,Tk], bool padding */
  mask?: 'pad' | 'full' | 'fullT' | 'head' | 'bool';
  /** q/k/v given as transposed views of [B, T, H, hd] storage */
  strided?: boolean;
}

export const label = (c: Case): string => JSON.stringify(c).replace(/"/g, '');

export function makeMask(c: Case, B: number, H: number, Tk: number, backend: Device | 'ref'): k.Tensor | undefined {
  const Tq = c.Tq;
  const dtype = backend === 'ref' ? 'float64' : 'float32';
  const arr = (n: number, f: (i: number) => number) => {
    const a = Float32Array.from({ length: n }, (_, i) => f(i));
    return backend === 'ref' ? Float64Array.from(a) : a;
  };
  // batch b keeps the first Tk - b keys (at least one)
  const keepPad = (i: number) => i % Tk < Math.max(1, Tk - Math.floor(i / Tk));
  switch (c.mask) {
    case 'pad':
      return k.tensor(arr(B * Tk, (i) => (keepPad(i) ? 0 : -Infinity)), { shape: [B, 1, 1, Tk], dtype, backend });
    case 'bool':
      return k.tensor(Array.from({ length: B * Tk }, (_, i) => keepPad(i)), { shape: [B, 1, 1, Tk], backend });
    case 'full': {
      const s = seeded(B * H * Tq * Tk, 21, -2, 2);
      return k.tensor(arr(s.length, (i) => (i % 11 === 5 ? -Infinity : s[i])), { shape: [B, H, Tq, Tk], dtype, backend });
    }
    case 'fullT': {
      // a transposed view: the kernel reads the mask through its strides
      const s = seeded(B * H * Tq * Tk, 23, -2, 2);
      const base = k.tensor(arr(s.length, (i) => s[i]), { shape: [B, H, Tk, Tq], dtype, backend });
      return base.transpose(2, 3);
    }
    case 'head': {
      const s = seeded(H * Tq * Tk, 22, -1, 1);
      return k.tensor(arr(s.length, (i) => s[i]), { shape: [1, H, Tq, Tk], dtype, backend });
    }
    default:
      return undefined;
  }
}

/** q, k, v as leaves; with `strided`, transposed views of [B, T, H, hd] storage. */
export function qkv(device: Device, c: Case, dtype: k.DType = 'float32'): Pair[] {
  const { B = 2, H = 2, Hkv = H, Tq, Tk = Tq, hd, hdv = hd } = c;
  const shapes: number[][] = [[B, H, Tq, hd], [B, Hkv, Tk, hd], [B, Hkv, Tk, hdv]];
  return shapes.map((s, i) => {
    if (!c.strided) return pair(device, s, 31 * i + s[2] + s[3], -1.5, 1.5, true, dtype);
    const p = pair(device, [s[0], s[2], s[1], s[3]], 31 * i + 7, -1.5, 1.5, false, dtype);
    const view = (t: k.Tensor): k.Tensor => k.noGrad(() => t.transpose(1, 2)).detach().requiresGrad_();
    const res = { c: view(p.c), r: view(p.r) };
    dispose(p); // the views keep the storage
    return res;
  });
}

/** out and the gradients of q, k, v on one backend. */
export function run(c: Case, ins: k.Tensor[], g: k.Tensor, backend: Device | 'ref'): Float64Array[] {
  const { B = 2, H = 2, Tk = c.Tq } = c;
  return k.tidy(() => {
    const mask = makeMask(c, B, H, Tk, backend);
    const opts: k.AttentionOptions = {
      causal: c.causal, window: c.window, softcap: c.softcap, scale: c.scale, dropout: c.dropout, mask,
      generator: new k.Generator(4242),
    };
    const out = k.scaledDotProductAttention(ins[0], ins[1], ins[2], opts);
    out.backward(g);
    return [out, ...ins.map((t) => t.grad!)].map((t) => Float64Array.from(t.toFloat32Array()));
  });
}

/** Reference results by case and input dtype (the SIMD children compare against each one twice). */
const refCache = new Map<string, Float64Array[]>();

export interface Tolerance {
  atol: number;
  rtol: number;
}

/** out, dq, dk, dv of case c with `dtype` q, k, v, dout on the device against the float64 reference. */
export function compare(device: Device, c: Case, tol: Tolerance, dtype: k.DType = 'float32'): void {
  const ins = qkv(device, c, dtype);
  const { B = 2, H = 2, Tq, hd, hdv = hd } = c;
  const g = pair(device, [B, H, Tq, hdv], 5, -1, 1, false, dtype);
  const got = run(c, ins.map((p) => p.c), g.c, device);
  const key = `${dtype} ${label(c)}`;
  let want = refCache.get(key);
  if (!want) refCache.set(key, (want = run(c, ins.map((p) => p.r), g.r, 'ref')));
  ['out', 'dq', 'dk', 'dv'].forEach((what, i) => assertClose(got[i], want[i], { ...tol, what: `${device} ${key} ${what}` }));
  dispose(...ins, g);
}
