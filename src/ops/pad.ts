// torch.nn.functional.pad over the last dim, 'constant' (zeros) or 'reflect' (mirror without
// repeating the edge: [a b c d] padded by 2 is [c b a b c d c b]). Reflect is one indexSelect of
// the mirrored positions, so its gradient adds each padded position back onto its source.
import { shapeStr } from '../tensor/layout.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { tensor, zeros } from './creation.js';
import { cat, indexSelect } from './indexing.js';

export type PadMode = 'constant' | 'reflect';

/**
 * Pads the last dim by `left` and `right` positions.
 * @example pad1d(x, 3, 0, 'reflect')  // [1, 1, 5] -> [1, 1, 8]
 */
export function pad1d(x: Tensor, left: number, right: number, mode: PadMode = 'constant'): Tensor {
  if (![left, right].every((p) => Number.isInteger(p) && p >= 0)) throw new Error(`pad1d: paddings must be integers >= 0, got ${left} and ${right}`);
  if (x.ndim < 1) throw new Error('pad1d: needs at least 1 dim');
  const T = x.shape[x.ndim - 1];
  if (left === 0 && right === 0) return x;
  return tidy(() => {
    if (mode === 'constant') {
      const side = (n: number): Tensor => zeros([...x.shape.slice(0, -1), n], { dtype: x.dtype, backend: x.backendName });
      return cat([...(left ? [side(left)] : []), x, ...(right ? [side(right)] : [])], -1);
    }
    if (left >= T || right >= T) throw new Error(`pad1d: reflect padding (${left}, ${right}) must be shorter than the input's last dim (${shapeStr(x.shape)})`);
    const index = new Int32Array(left + T + right);
    for (let i = 0; i < index.length; i++) {
      const p = i - left; // position in x, mirrored at both ends
      index[i] = p < 0 ? -p : p >= T ? 2 * (T - 1) - p : p;
    }
    return indexSelect(x, -1, tensor(index, { backend: x.backendName }));
  });
}
