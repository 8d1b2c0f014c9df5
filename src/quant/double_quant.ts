// Double quantization (QLoRA §3, bitsandbytes' compress_statistics): the float32 absmax of every
// 4-bit block is itself stored in 8 bits, as codes of the signed dynamic map (Dettmers 2015,
// "8-Bit Approximations for Parallelism in Deep Learning") in blocks of 256 after subtracting
// their mean:  absmax[i] = DYNAMIC_MAP[codes[i]] * nestedAbsmax[floor(i / 256)] + offset.

const f32 = Math.fround;

/**
 * bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for decade
 * i = 0..6, the 2^i midpoints of linspace(0.1, 1, 2^i + 1) scaled by 10^(i-6), both signs, plus
 * 0 and 1, sorted (256 entries). Computed exactly and rounded once to float32; torch's float32
 * linspace lands within an ulp of it (how far depends on its SIMD width), which is why a
 * checkpoint's own map (nested_quant_map) is what QuantizedStats.code holds when loading.
 */
function createDynamicMap(): Float32Array {
  const data: number[] = [];
  for (let i = 0; i < 7; i++) {
    const n = 2 ** i;
    for (let j = 0; j < n; j++) {
      const mean = (0.1 + (0.9 * (j + 0.5)) / n) * 10 ** (i - 6); // midpoint of boundaries j, j+1
      data.push(mean, -mean);
    }
  }
  data.push(0, 1);
  return Float32Array.from(data.sort((a, b) => a - b));
}

/** The signed dynamic 8-bit map (256 sorted entries in [-0.993, 1]). */
export const DYNAMIC_MAP = createDynamicMap();

/** bitsandbytes' nested block size for the statistics. */
export const NESTED_BLOCK_SIZE = 256;

/** Block statistics stored in 8 bits (the `nested_*` fields of a bitsandbytes QuantState). */
export interface QuantizedStats {
  /** one DYNAMIC_MAP index per statistic */
  codes: Uint8Array;
  /** one float32 scale per `blockSize` codes */
  nestedAbsmax: Float32Array;
  /** the mean subtracted before quantizing */
  offset: number;
  blockSize: number;
  /** the 256-entry map the codes index (DYNAMIC_MAP unless a checkpoint brings its own) */
  code: Float32Array;
}

/** Index of the map entry nearest to x (binary search over the sorted map; ties to the lower). */
function nearestSorted(map: Float32Array, x: number): number {
  let lo = 0;
  let hi = map.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (map[mid] <= x) lo = mid;
    else hi = mid;
  }
  return Math.abs(x - map[lo]) <= Math.abs(map[hi] - x) ? lo : hi;
}

/**
 * Quantizes positive block statistics (absmax values) as bitsandbytes' double quantization does.
 * @example const s = quantizeStats(q.absmax); const back = dequantizeStats(s)
 */
export function quantizeStats(stats: Float32Array, blockSize = NESTED_BLOCK_SIZE): QuantizedStats {
  if (!Number.isInteger(Math.log2(blockSize))) throw new Error(`quantizeStats: blockSize must be a power of two, got ${blockSize}`);
  let sum = 0;
  for (const v of stats) sum += v;
  const offset = f32(stats.length ? sum / stats.length : 0);
  const codes = new Uint8Array(stats.length);
  const nestedAbsmax = new Float32Array(Math.ceil(stats.length / blockSize));
  for (let b = 0; b < nestedAbsmax.length; b++) {
    const end = Math.min(stats.length, (b + 1) * blockSize);
    let m = 0;
    for (let i = b * blockSize; i < end; i++) m = Math.max(m, Math.abs(stats[i] - offset));
    nestedAbsmax[b] = m;
    for (let i = b * blockSize; i < end; i++) codes[i] = nearestSorted(DYNAMIC_MAP, m === 0 ? 0 : (stats[i] - offset) / m);
  }
  return { codes, nestedAbsmax, offset, blockSize, code: DYNAMIC_MAP };
}

/** The float32 statistics that 8-bit ones stand for (the same float32 arithmetic as native/quant.cc). */
export function dequantizeStats(s: QuantizedStats): Float32Array {
  return Float32Array.from(s.codes, (c, i) => f32(f32(s.code[c] * s.nestedAbsmax[Math.floor(i / s.blockSize)]) + s.offset));
}
