// Logits processing and token choice on the host, row by row, in HF generate()'s order:
// repetition penalty, OpenAI's presence/frequency penalties, then (when sampling) temperature,
// top-k, top-p, min-p, then a draw.
import { topIndices } from './top_indices.js';

export interface SamplingOptions {
  /** 0 (or doSample false) = greedy */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repetitionPenalty?: number;
  /** OpenAI's presence_penalty: subtracted once from the logit of every token generated so far */
  presencePenalty?: number;
  /** OpenAI's frequency_penalty: subtracted from a token's logit once per time it was generated */
  frequencyPenalty?: number;
}

/** HF RepetitionPenaltyLogitsProcessor: seen tokens' logits divided (positive) or multiplied (negative). */
export function applyRepetitionPenalty(logits: Float32Array, seen: Iterable<number>, penalty: number): void {
  if (penalty === 1) return;
  for (const id of new Set(seen)) {
    const s = logits[id];
    logits[id] = s < 0 ? s * penalty : s / penalty;
  }
}

/**
 * OpenAI's presence and frequency penalties over the tokens generated so far (not the prompt, as
 * vLLM does): logit[t] -= frequency * count(t) + presence * (count(t) > 0).
 * @example applyPresenceFrequencyPenalty(logits, [5, 5, 9], { presencePenalty: 0.5, frequencyPenalty: 0.1 })
 */
export function applyPresenceFrequencyPenalty(logits: Float32Array, generated: readonly number[], o: Pick<SamplingOptions, 'presencePenalty' | 'frequencyPenalty'>): void {
  const presence = o.presencePenalty ?? 0;
  const frequency = o.frequencyPenalty ?? 0;
  if (presence === 0 && frequency === 0) return;
  const counts = new Map<number, number>();
  for (const t of generated) counts.set(t, (counts.get(t) ?? 0) + 1);
  for (const [t, n] of counts) logits[t] -= frequency * n + presence;
}

/** log-softmax of one row in float64: log p_i = z_i - max - log(sum exp(z - max)). */
export function logSoftmax(logits: Float32Array): Float64Array {
  // indexed loops: Float64Array.from with a map function cost ~5x more per row (top_logprobs)
  const V = logits.length;
  let m = -Infinity;
  for (let i = 0; i < V; i++) if (logits[i] > m) m = logits[i];
  let s = 0;
  for (let i = 0; i < V; i++) s += Math.exp(logits[i] - m);
  const lse = m + Math.log(s);
  const out = new Float64Array(V);
  for (let i = 0; i < V; i++) out[i] = logits[i] - lse;
  return out;
}

export function argmax(xs: Float32Array): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
}

/**
 * The smallest count n >= 1 of `ranked` (descending) whose probability mass reaches topP, as HF's
 * TopPLogitsWarper keeps; -1 when the mass of all of `ranked` stays below it.
 */
function nucleusSize(p: Float64Array, ranked: readonly number[], topP: number): number {
  let mass = 0;
  for (let n = 0; n < ranked.length; n++) {
    if (n > 0 && mass >= topP) return n;
    mass += p[ranked[n]];
  }
  return mass >= topP ? ranked.length : -1;
}

/**
 * Softmax probabilities after temperature, top-k, top-p and min-p filtering (filtered = 0).
 * Only the ranked prefix the filters need is ordered (topIndices), and sums run over the kept
 * indices in index order, so every value is the same double a full sort of the row would give.
 */
export function samplingProbs(logits: Float32Array, o: SamplingOptions): Float64Array {
  const V = logits.length;
  const t = o.temperature ?? 1;
  const z = new Float64Array(V);
  for (let i = 0; i < V; i++) z[i] = logits[i] / t;
  // the kept indices, ascending; `ranked` the same set best first once a filter has ordered it
  let ranked: number[] | null = o.topK && o.topK > 0 && o.topK < V ? topIndices(z, o.topK) : null;
  let kept = ranked ? Int32Array.from(ranked).sort() : new Int32Array(V);
  if (!ranked) for (let i = 0; i < V; i++) kept[i] = i;
  const probs = (): Float64Array => {
    let m = -Infinity;
    for (let j = 0; j < kept.length; j++) if (z[kept[j]] > m) m = z[kept[j]];
    const p = new Float64Array(V);
    let s = 0;
    for (let j = 0; j < kept.length; j++) s += p[kept[j]] = Math.exp(z[kept[j]] - m);
    // every kept logit -Infinity (or NaN): the dense definition's 0 / NaN made the whole row NaN
    if (Number.isNaN(s)) return p.fill(NaN);
    for (let j = 0; j < kept.length; j++) p[kept[j]] /= s;
    return p;
  };
  if (o.topP !== undefined && o.topP < 1) {
    const p = probs();
    // rank the best 256 (a peaked row's nucleus), or all of them when their mass stays below top_p
    for (let m = 256; ; m = kept.length) {
      const prefix: number[] = ranked ?? topIndices(z, m);
      const whole = prefix.length === kept.length;
      const n = nucleusSize(p, prefix, o.topP);
      if (n >= 0 || whole) {
        ranked = prefix.slice(0, n >= 0 ? n : prefix.length);
        kept = Int32Array.from(ranked).sort();
        break;
      }
    }
  }
  if (o.minP !== undefined && o.minP > 0) {
    const p = probs();
    let top = 0;
    for (let j = 0; j < kept.length; j++) if (p[kept[j]] > top) top = p[kept[j]];
    kept = kept.filter((i) => !(p[i] < o.minP! * top));
  }
  return probs();
}

/** Inverse-CDF draw from probabilities with a uniform u in [0, 1). */
export function drawFrom(probs: Float64Array, u: number): number {
  let c = 0;
  let last = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] === 0) continue;
    c += probs[i];
    last = i;
    if (u < c) return i;
  }
  return last;
}
