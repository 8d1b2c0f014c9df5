// Inference-time cache of derived weights: a weight rounded to the autocast dtype, or BERT's
// query/key/value weights concatenated for one QKV GEMM. Without it, every forward under
// k.autocast rounds every weight again (a pass over all parameters per batch: 14 of the 28 cast
// kernels per batch of a 2-layer BERT-base encode, about 12% of its time), as PyTorch's autocast
// weight cache avoids within one autocast region.
// The cache lives for one withWeightCache() scope (k.embeddings.encode wraps all its batches in
// one) and is freed when it ends. Tensors carry no version counter that an in-place update
// (an optimizer step, load_state_dict) would bump, so the rule that keeps it correct is the scope:
// an entry is only made for a weight that does not need its gradient (no graph can record it, so
// no backward/optimizer step of this scope can change it through autograd), and the caller must
// not write into the weights inside the scope.
import { keep } from '../../tensor/scope.js';
import { noGrad } from '../../tensor/grad_mode.js';
import type { Tensor } from '../../tensor/tensor.js';
import { needsGrad } from '../dispatch.js';

let active: Map<Tensor, Map<string, Tensor>> | null = null;

/**
 * Runs fn with derived weights cached (nested calls share the outer scope's cache); every cached
 * tensor is disposed when the outermost scope ends.
 * @example k.noGrad(() => withWeightCache(() => batches.map((b) => model.forward(b))))
 */
export function withWeightCache<T>(fn: () => T): T {
  if (active) return fn();
  const cache = new Map<Tensor, Map<string, Tensor>>();
  active = cache;
  try {
    return fn();
  } finally {
    active = null;
    for (const byTag of cache.values()) for (const t of byTag.values()) t.dispose();
  }
}

/** Whether a withWeightCache scope is open. */
export const weightCacheActive = (): boolean => active !== null;

/**
 * make() once per (weight, tag) inside a withWeightCache scope, for a weight that needs no
 * gradient; elsewhere make() on every call. The result belongs to the cache when cached (the
 * caller must not dispose it) and is made without a graph.
 * @example cachedWeight(layer.weight, 'bfloat16', () => to(layer.weight, 'bfloat16'))
 */
export function cachedWeight(weight: Tensor, tag: string, make: () => Tensor): Tensor {
  if (!active || needsGrad(weight)) return noGrad(make);
  let byTag = active.get(weight);
  if (!byTag) active.set(weight, (byTag = new Map()));
  let t = byTag.get(tag);
  if (!t || t.isDisposed) {
    // kept out of every tidy scope: only the cache's end frees it
    t = keep(noGrad(make));
    byTag.set(tag, t);
  }
  return t;
}
