// Shared by the block-sparse attention tests: a layout per mode, float64 leaves, and the output with
// the gradients of sum(out * w) for a fixed random w.
import * as k from '../../../src/index.js';
import { refLeaf, seeded } from '../../helpers.js';

export interface SparseCase {
  name: string;
  cfg: object;
  T: number;
  Tq?: number;
  B?: number;
  H?: number;
  Hkv?: number;
  hd?: number;
  causal?: boolean;
}

/** A layout per mode with block 4: random, global and local blocks all present. */
export const MODE_CONFIGS: Record<string, object> = {
  dense: { mode: 'dense', block: 4 },
  fixed: { mode: 'fixed', block: 4, num_local_blocks: 2, different_layout_per_head: true, num_different_global_patterns: 2 },
  variable: { mode: 'variable', block: 4, num_random_blocks: 1, local_window_blocks: [1, 2], global_block_indices: [1], seed: 3 },
  bigbird: { mode: 'bigbird', block: 4, num_random_blocks: 1, num_sliding_window_blocks: 1, seed: 5 },
  bslongformer: { mode: 'bslongformer', block: 4, num_sliding_window_blocks: 1, global_block_indices: [0] },
  local_sliding_window: { mode: 'local_sliding_window', block: 4, num_sliding_window_blocks: 1 },
};

type Attn = (q: k.Tensor, kk: k.Tensor, v: k.Tensor) => k.Tensor;

/** out and the gradients of sum(out * w) with respect to q, k, v; inputs made by `make` from float64 leaves. */
export function outAndGrads(f: Attn, q: k.Tensor, kk: k.Tensor, v: k.Tensor): Float64Array[] {
  for (const t of [q, kk, v]) t.zeroGrad();
  const out = k.tidy(() => {
    const o = f(q, kk, v);
    const w = k.tensor(seeded(o.numel, 4), { shape: [...o.shape], dtype: o.dtype, backend: o.backendName });
    o.mul(w).sum().backward();
    return Float64Array.from(o.to('float64').toTypedArray() as Float64Array);
  });
  return [out, ...[q, kk, v].map((t) => Float64Array.from(t.grad!.to('float64').toTypedArray() as Float64Array))];
}

export function leaves(c: SparseCase, backend: k.BackendName, dtype: k.DType): k.Tensor[] {
  const { B = 1, H = 2, Hkv = H, T, Tq = T, hd = 4 } = c;
  return ([[B, H, Tq, hd], [B, Hkv, T, hd], [B, Hkv, T, hd]] as number[][]).map((shape, i) => {
    const r = refLeaf(shape, i + 1);
    if (backend === 'ref' && dtype === 'float64') return r;
    const moved = k.noGrad(() => r.to(backend).to(dtype));
    r.dispose();
    return moved.requiresGrad_(true);
  });
}

export const layoutOf = (c: SparseCase): k.BlockLayout => k.makeLayout(k.parseSparsityConfig(c.cfg), c.H ?? 2, c.T);

