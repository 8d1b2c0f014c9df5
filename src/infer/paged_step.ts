// One forward of a continuous batch: the new tokens of every scheduled sequence (one decode
// token, or a chunk of its prompt) flattened into a single row [1, N] with each token's own
// position, attended through the paged cache (each token sees only its own sequence), and the
// logits computed only where a sequence needs its next token.
import { tensor } from '../ops/creation.js';
import { toFloat32Array } from '../ops/transfer.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import type { LanguageModel } from '../models/causal_lm.js';
import type { PagedKVCache, PagedSequence } from '../models/paged_kv_cache.js';

export interface StepInput {
  seq: PagedSequence;
  /** the tokens fed this step, at positions seq.cached .. seq.cached + tokens.length - 1 */
  tokens: readonly number[];
  /** return the logits after the last of them (the sequence picks its next token) */
  wantLogits: boolean;
}

/**
 * Runs the step and advances each sequence's cached count; returns the float32 logits [V] of the
 * inputs that asked for them, in input order. The caller has reserved the sequences' blocks.
 * @example const [next] = pagedStep(model, cache, [{ seq, tokens: [42], wantLogits: true }])
 */
export function pagedStep(model: LanguageModel, cache: PagedKVCache, inputs: readonly StepInput[]): Float32Array[] {
  const ids: number[] = [];
  const positions: number[] = [];
  const rows: number[] = [];
  for (const x of inputs) {
    x.tokens.forEach((t, i) => {
      ids.push(t);
      positions.push(x.seq.cached + i);
    });
    if (x.wantLogits) rows.push(ids.length - 1);
  }
  const backend = cache.keys[0]?.backendName;
  cache.beginStep(inputs.map((x) => ({ seq: x.seq, start: x.seq.cached, count: x.tokens.length })));
  let flat: Float32Array;
  try {
    flat = noGrad(() => tidy(() => {
      const out = model.forward({
        inputIds: tensor([ids], { dtype: 'int64', backend }),
        positionIds: tensor([positions], { dtype: 'int64', backend }),
        logitsRows: rows.length ? tensor(rows, { dtype: 'int64', backend }) : null,
        returnLogits: rows.length > 0,
        cache,
      });
      return out.logits ? toFloat32Array(out.logits) : new Float32Array(0);
    }));
  } finally {
    cache.endStep();
  }
  for (const x of inputs) x.seq.cached += x.tokens.length;
  const V = rows.length ? flat.length / rows.length : 0;
  return rows.map((_, i) => flat.subarray(i * V, (i + 1) * V));
}
