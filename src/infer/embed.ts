// Sentence embeddings from a decoder: the final (normed) hidden states of every token, averaged
// (mean pooling), then scaled to unit length so that cosine similarity is a dot product — what
// vLLM's mean-pooling embed task returns for a decoder and OpenAI's embeddings are (unit length).
import { tensor } from '../ops/creation.js';
import { mean } from '../ops/reduce.js';
import { toFloat32Array } from '../ops/transfer.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import type { LanguageModel } from '../models/causal_lm.js';

/**
 * The unit-length mean of the last hidden states of one sequence: float32 [D].
 * @example const v = meanPooledEmbedding(model, tok.encode('hello'))
 */
export function meanPooledEmbedding(model: LanguageModel, ids: readonly number[]): Float32Array {
  if (!ids.length) throw new Error('meanPooledEmbedding: the sequence is empty');
  const pooled = noGrad(() => tidy(() => {
    // lastLogitsOnly: the head runs on one position only; the hidden states are what we want
    const out = model.forward({ inputIds: tensor([[...ids]], { dtype: 'int64' }), outputHiddenStates: true, lastLogitsOnly: true });
    return toFloat32Array(mean(out.hiddenStates.at(-1)!, 1)); // [1, T, D] -> [1, D]
  }));
  let norm = 0;
  for (const x of pooled) norm += x * x;
  norm = Math.sqrt(norm) || 1;
  return pooled.map((x) => x / norm);
}
