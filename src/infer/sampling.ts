// Logits processing and token choice on the host, row by row, in HF generate()'s order:
// repetition penalty, OpenAI's presence/frequency penalties, then (when sampling) temperature,
// top-k, top-p, min-p, then a draw.

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
  let m = -Infinity;
  for (const z of logits) if (z > m) m = z;
  let s = 0;
  for (const z of logits) s += Math.exp(z - m);
  const lse = m + Math.log(s);
  return Float64Array.from(logits, (z) => z - lse);
}

export function argmax(xs: Float32Array): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
}

/** Softmax probabilities after temperature, top-k, top-p and min-p filtering (filtered = 0). */
export function samplingProbs(logits: Float32Array, o: SamplingOptions): Float64Array {
  const V = logits.length;
  const t = o.temperature ?? 1;
  const z = Float64Array.from(logits, (x) => x / t);
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => z[b] - z[a]);
  const keep = new Uint8Array(V).fill(1);
  const drop = (i: number): void => {
    keep[i] = 0;
  };
  if (o.topK && o.topK > 0 && o.topK < V) for (const i of order.slice(o.topK)) drop(i);
  const probs = (): Float64Array => {
    let m = -Infinity;
    for (let i = 0; i < V; i++) if (keep[i] && z[i] > m) m = z[i];
    const p = new Float64Array(V);
    let s = 0;
    for (let i = 0; i < V; i++) if (keep[i]) s += p[i] = Math.exp(z[i] - m);
    for (let i = 0; i < V; i++) p[i] /= s;
    return p;
  };
  if (o.topP !== undefined && o.topP < 1) {
    // keep the smallest prefix (by probability, descending) whose mass reaches top_p; always >= 1 token
    const p = probs();
    let mass = 0;
    let n = 0;
    for (const i of order) {
      if (!keep[i]) continue;
      if (n > 0 && mass >= o.topP) drop(i);
      else {
        mass += p[i];
        n++;
      }
    }
  }
  if (o.minP !== undefined && o.minP > 0) {
    const p = probs();
    const top = p[order[0]];
    for (let i = 0; i < V; i++) if (keep[i] && p[i] < o.minP * top) drop(i);
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
