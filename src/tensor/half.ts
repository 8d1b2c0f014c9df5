// float16 / bfloat16 <-> float32 bit conversions, round to nearest even (IEEE 754), the same
// rules as native/runtime.cc. Used by the reference backend and when loading checkpoints.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function f32ToBf16(x: number): number {
  f32[0] = x;
  const u = u32[0];
  if ((u & 0x7fffffff) > 0x7f800000) return ((u >>> 16) | 0x40) & 0xffff; // NaN stays NaN (quiet)
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16ToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0];
}

export function f32ToF16(x: number): number {
  f32[0] = x; // round to float32 first: float16 storage always comes from a float32 value
  const u = u32[0];
  const sign = (u >>> 16) & 0x8000;
  const a = u & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7e00 | ((a >>> 13) & 0x3ff); // NaN
  if (a >= 0x477ff000) return sign | 0x7c00; // overflow rounds to infinity
  if (a < 0x38800000) {
    // subnormal result: value = q * 2^-24
    if (a < 0x33000000) return sign;
    const e = a >>> 23;
    const m = (a & 0x7fffff) | 0x800000;
    const shift = 126 - e;
    let q = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (q & 1))) q++;
    return sign | q;
  }
  const r = (a + 0xfff + ((a >>> 13) & 1) - 0x38000000) >>> 13;
  return sign | r;
}

export function f16ToF32(h: number): number {
  const sign = (h & 0x8000) << 16;
  const e = (h >>> 10) & 0x1f;
  let m = h & 0x3ff;
  if (e === 0x1f) u32[0] = sign | 0x7f800000 | (m << 13);
  else if (e !== 0) u32[0] = sign | ((e + 112) << 23) | (m << 13);
  else if (m === 0) u32[0] = sign;
  else {
    let sh = 0;
    while (!(m & 0x400)) {
      m <<= 1;
      sh++;
    }
    u32[0] = sign | ((113 - sh) << 23) | ((m & 0x3ff) << 13);
  }
  return f32[0];
}
