// The dense definition of samplingProbs (HF's warpers written out plainly): a stable sort of all V
// indices by score, top-k, top-p over the sorted kept tokens, min-p against the top probability,
// sums in index order. The oracle the fast samplingProbs is tested against bit for bit
// (test/infer/sampling_exact.test.ts) and timed against (bench/serve_step.ts); never used to serve.
import type { SamplingOptions } from './sampling.js';

/** samplingProbs by definition: O(V log V) per row. */
export function denseProbs(logits: Float32Array, o: SamplingOptions): Float64Array {
  const V = logits.length;
  const z = Float64Array.from(logits, (x) => x / (o.temperature ?? 1));
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => z[b] - z[a]);
  const keep = new Uint8Array(V).fill(1);
  if (o.topK && o.topK > 0 && o.topK < V) for (const i of order.slice(o.topK)) keep[i] = 0;
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
    const p = probs();
    let mass = 0;
    let n = 0;
    for (const i of order) {
      if (!keep[i]) continue;
      if (n > 0 && mass >= o.topP) keep[i] = 0;
      else {
        mass += p[i];
        n++;
      }
    }
  }
  if (o.minP !== undefined && o.minP > 0) {
    const p = probs();
    const top = p[order[0]];
    for (let i = 0; i < V; i++) if (keep[i] && p[i] < o.minP * top) keep[i] = 0;
  }
  return probs();
}
