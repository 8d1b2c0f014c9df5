// Rotary position embedding (Su et al. 2021) in HF's half-rotation layout or the interleaved
// (GPT-J / Meta) layout. cos/sin tables are [B|1, T, hd/2], one angle per rotated pair.
import { tidy } from '../tensor/scope.js';
import { Tensor } from '../tensor/tensor.js';
import { tensor } from './creation.js';
import { add, mul, neg, sub, to, unary } from './elementwise.js';
import { ropeFused } from './fused/rope.js';
import { cat, stack } from './indexing.js';
import { matmul } from './matmul.js';
import { narrow, reshape, select, unsqueeze, flatten } from './view.js';

export interface RopeOptions {
  interleaved?: boolean;
}

/**
 * Rotates x [B, H, T, hd] by the angles whose cos/sin are given ([B|1, T, hd/2]).
 * @example const { cos, sin } = k.rotaryTables(positions, 64, 10000); k.rope(q, cos, sin)
 */
export const rope = (x: Tensor, cos: Tensor, sin: Tensor, opts: RopeOptions = {}): Tensor =>
  ropeFused(x, cos, sin, opts.interleaved ?? false);

/** HF's formula: x cos + rotate_half(x) sin, with cos/sin repeated over both halves. */
export function ropeComposite(x: Tensor, cos: Tensor, sin: Tensor, opts: RopeOptions = {}): Tensor {
  const hd = x.shape[3];
  const half = hd / 2;
  return tidy(() => {
    const c = unsqueeze(cos, 1); // [B, 1, T, hd/2]
    const s = unsqueeze(sin, 1);
    if (opts.interleaved) {
      const pairs = reshape(x, [...x.shape.slice(0, 3), half, 2]);
      const [x1, x2] = [select(pairs, 4, 0), select(pairs, 4, 1)];
      const o1 = sub(mul(x1, c), mul(x2, s));
      const o2 = add(mul(x2, c), mul(x1, s));
      return flatten(stack([o1, o2], 4), 3);
    }
    const [x1, x2] = [narrow(x, 3, 0, half), narrow(x, 3, half, half)];
    const c2 = cat([c, c], 3);
    const s2 = cat([s, s], 3);
    return add(mul(x, c2), mul(cat([neg(x2), x1], 3), s2));
  });
}

/**
 * cos/sin tables [B, T, hd/2] for integer positions [B, T]: angle = position * theta^(-2i/hd),
 * computed in float32 like HF's rotary embedding. `invFreq` overrides the frequencies (rope scaling).
 */
export function rotaryTables(positions: Tensor, headDim: number, theta = 10000, invFreq?: Float32Array | Tensor): { cos: Tensor; sin: Tensor } {
  const half = headDim / 2;
  return tidy(() => {
    const pos = unsqueeze(to(positions, 'float32'), -1); // [B, T, 1]
    // a Tensor of frequencies avoids an upload per call (a captured CUDA graph cannot upload)
    const f = invFreq instanceof Tensor ? reshape(invFreq, [1, half])
      : tensor(invFreq ?? Float32Array.from({ length: half }, (_, i) => 1 / theta ** ((2 * i) / headDim)), { backend: positions.backendName, shape: [1, half] });
    const angles = matmul(pos, f); // [B, T, hd/2]
    return { cos: unary('cos', angles), sin: unary('sin', angles) };
  });
}
