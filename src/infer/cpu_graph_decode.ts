// Batch-1 decoding on the CPU without the per-op TypeScript: after one plain step (which builds
// the model's lazy decode state: merged projections, rotary tables), three steps are recorded as a
// CPU graph (src/backend/cpu/graph.ts) and every later step replays it with one call into the
// addon. The recorded steps run for real, so every step yields its token whether or not the graph
// is built; when it cannot be (the reason is in `failure`), decoding goes on through the model's
// forward. The CPU counterpart of graph_decode.ts (CUDA graphs), with the ordinary KVCache: the
// write position and the number of keys read are the arguments the graph moves per step.
import { loadNative } from '../backend/addon.js';
import { isProfiling } from '../profile/profiler.js';
import { CpuGraph, type PoolEntry, Recording, record, releasePool } from '../backend/cpu/graph.js';
import { tensor } from '../ops/creation.js';
import { copy_ } from '../ops/inplace.js';
import { keep, tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import type { CausalLM, LanguageModel } from '../models/causal_lm.js';
import { fixedStepBlocker, nextTokenLogits } from './graph_decode.js';
import type { KVCache } from '../models/kv_cache.js';

/** Why CPU graphs cannot decode this model here, or null when they can. */
export function cpuGraphBlocker(model: LanguageModel, backend: string, batch: number, padded: boolean): string | null {
  if (process.env.KESTREL_CPU_GRAPHS === '0') return 'KESTREL_CPU_GRAPHS=0';
  if (backend !== 'cpu') return 'not on the cpu backend';
  if (!loadNative()) return 'the native addon is not built';
  return fixedStepBlocker(model, batch, padded);
}

/** One model's batch-1 decode steps over a KVCache: plain, recorded, then replayed. */
export class CpuGraphDecoder {
  /** graphs built in this process (for tests and diagnostics) */
  static built = 0;
  /** why the graph was not built (null while recording or once built) */
  failure: string | null = null;
  private readonly ids: Tensor;
  private readonly positions: Tensor;
  private readonly pool: PoolEntry[] = [];
  private readonly recordings: Recording[] = [];
  private graph: CpuGraph | null = null;
  private first = 0; // the position of the first recorded step
  private warm = false; // the first step has run op by op (it builds the lazy decode state)
  private plainOut: { logits: Tensor; argmax: Tensor } | null = null; // a step's own outputs, freed at the next
  private graphOut: { logits: Tensor; argmax: Tensor } | null = null; // the graph's, rewritten by each replay

  constructor(private readonly model: CausalLM, private readonly cache: KVCache) {
    this.ids = keep(tensor([[0]], { dtype: 'int64', backend: 'cpu' }));
    this.positions = keep(tensor([[0]], { dtype: 'int64', backend: 'cpu' }));
  }

  /** The step for `token` at `position` (= the cache's length): the next token's logits [V] and their argmax [1], valid until the next step. */
  step(token: number, position: number): { logits: Tensor; argmax: Tensor } {
    if (position !== this.cache.length) throw new Error(`CpuGraphDecoder: position ${position} is not the cache's length ${this.cache.length}`);
    tidy(() => {
      copy_(this.ids, tensor([[token]], { dtype: 'int64', backend: 'cpu' }));
      copy_(this.positions, tensor([[position]], { dtype: 'int64', backend: 'cpu' }));
    });
    this.releasePlain();
    // k.profile times kernels one call at a time: while it runs, steps go op by op (a graph stays valid)
    const profiling = isProfiling();
    if (this.graph && !profiling) {
      if (position + 1 > this.cache.maxLength) throw new Error(`KVCache: ${position} cached + 1 new token exceed the cache length ${this.cache.maxLength}`);
      this.graph.replay(position - this.first);
      this.cache.advance(1);
      return this.graphOut!;
    }
    // recordings must be of consecutive steps: a step op by op in between ends them
    if (profiling && !this.graph && this.recordings.length && !this.failure) this.giveUp('k.profile started while the steps were recorded');
    if (this.graph || this.failure || profiling || !this.warm) {
      this.warm = true;
      return (this.plainOut = this.forward());
    }
    const rec = new Recording(this.pool, this.recordings.length === 0);
    if (!this.recordings.length) this.first = position;
    this.recordings.push(rec);
    const out = record(rec, () => this.forward());
    if (rec.failure) this.giveUp(rec.failure);
    else if (this.recordings.length === 3) {
      const g = CpuGraph.build(loadNative()!, this.pool, this.recordings as [Recording, Recording, Recording]);
      if (typeof g === 'string') this.giveUp(g);
      else {
        (this.graph = g), CpuGraphDecoder.built++;
        return (this.graphOut = out); // the blocks every replay writes
      }
    }
    return (this.plainOut = out);
  }

  private forward(): { logits: Tensor; argmax: Tensor } {
    const [logits, next] = nextTokenLogits(this.model, this.ids, this.positions, this.cache);
    return { logits: keep(logits), argmax: keep(next) };
  }

  private giveUp(why: string): void {
    this.failure = why;
    releasePool(this.pool);
  }

  private releasePlain(): void {
    this.plainOut?.logits.dispose();
    this.plainOut?.argmax.dispose();
    this.plainOut = null;
  }

  dispose(): void {
    this.releasePlain();
    this.graphOut?.logits.dispose();
    this.graphOut?.argmax.dispose();
    this.graphOut = null;
    this.graph?.dispose();
    this.graph = null;
    releasePool(this.pool);
    this.ids.dispose();
    this.positions.dispose();
  }
}
