// Inference: texts -> embeddings in batches without autograd, longest texts first (as
// sentence-transformers' encode sorts them, so each batch pads little), returned in input order.
import { noGrad } from '../tensor/grad_mode.js';
import { withWeightCache } from '../ops/fused/weight_cache.js';
import { tidy } from '../tensor/scope.js';
import { checkNumber } from '../io/check.js';
import { toFloat32Array } from '../ops/transfer.js';
import type { SentenceEmbedder } from './model.js';
import { l2Normalize } from './similarity.js';

export interface EncodeOptions {
  /** texts per forward (default 32) */
  batchSize?: number;
  /** L2-normalise the outputs (default false: what the model's own modules give) */
  normalize?: boolean;
  /** a prompt name from the model's prompts ("query", "passage", ...); default the model's default_prompt_name */
  promptName?: string;
  /** a literal prompt put before each text (wins over promptName) */
  prompt?: string;
  /** called after each batch with the texts done so far */
  onProgress?: (done: number, total: number) => void;
}

/**
 * One embedding per text, in input order.
 * @example const [q] = k.embeddings.encode(model, ['how tall is the tower?'], { promptName: 'query', normalize: true })
 */
export function encode(model: SentenceEmbedder, texts: readonly string[], opts: EncodeOptions = {}): Float32Array[] {
  const batchSize = checkNumber(opts.batchSize ?? 32, { int: true, min: 1 }, 'encode: batchSize');
  texts.forEach((t, i) => {
    if (typeof t !== 'string') throw new Error(`encode: text ${i} is not a string`);
  });
  const prompt = opts.prompt ?? model.promptText(opts.promptName);
  const order = texts.map((t, i) => ({ i, n: t.length })).sort((a, b) => b.n - a.n || a.i - b.i).map((x) => x.i);
  const out = new Array<Float32Array>(texts.length);
  const wasTraining = model.training;
  model.eval();
  try {
    // the weights are rounded to the autocast dtype (and BERT's QKV concatenated) once for all batches
    withWeightCache(() => {
      for (let s = 0; s < order.length; s += batchSize) {
        const idx = order.slice(s, s + batchSize);
        const flat = noGrad(() => tidy(() => {
          const e = model.forward(model.tokenize(idx.map((i) => texts[i]), prompt));
          return toFloat32Array(opts.normalize ? l2Normalize(e) : e);
        }));
        const D = flat.length / idx.length;
        idx.forEach((i, r) => (out[i] = flat.slice(r * D, (r + 1) * D)));
        opts.onProgress?.(Math.min(s + batchSize, order.length), order.length);
      }
    });
  } finally {
    if (wasTraining) model.train();
  }
  return out;
}
