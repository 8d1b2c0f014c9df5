// Batch-1 decoding on the CPU without the per-op TypeScript: after one plain step (which builds
// the model's lazy decode state: merged projections, rotary tables), three steps are recorded as a
// CPU graph (src/backend/cpu/graph.ts) and every later step replays it with one call into the
// addon. The recorded steps run for real, so every step yields its token whether or not the graph
// is built; when it cannot be (the reason is in `failure`), decoding goes on through the model's
// forward. The CPU counterpart of graph_decode.ts (CUDA graphs), with the ordinary KVCache: the
// write position and the number of keys read are the arguments the graph moves per step.
import { loadNative } from '../backend/addon.js';
import { isProfiling } from '../profile/profiler.js';
import { addKernel } from '../profile/recorder.js';
import { CpuGraph, type PoolEntry, Recording, record, releasePool } from '../backend/cpu/graph.js';
import { tensor } from '../ops/creation.js';
import { fill_ } from '../ops/inplace.js';
import { keep } from '../tensor/scope.js';
import type { DType } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import type { CausalLM, LanguageModel } from '../models/causal_lm.js';
import { fixedStepBlocker, nextTokenLogits } from './graph_decode.js';
import { KVCache } from '../models/kv_cache.js';

/** Why CPU graphs cannot decode this model here, or null when they can. */
export function cpuGraphBlocker(model: LanguageModel, backend: string, batch: number, padded: boolean): string | null {
  if (process.env.KESTREL_CPU_GRAPHS === '0') return 'KESTREL_CPU_GRAPHS=0';
  if (backend !== 'cpu') return 'not on the cpu backend';
  if (!loadNative()) return 'the native addon is not built';
  return fixedStepBlocker(model, batch, padded);
}

/** The key of the decoder a model keeps between generations (Module.attach). */
const KEPT = 'cpu-graph-decoder';
/** Kept caches are made this many positions at a time, so that generations of similar lengths share one. */
const CACHE_ROUNDING = 256;

/**
 * One model's batch-1 decode steps over its own KVCache: plain, recorded, then replayed. The model
 * keeps its last one (acquire / release): the next generation's prompt refills the same cache, and
 * its first decode step is recorded once more and compared with the kept graph's replay at that
 * position; when every call and argument agree (CpuGraph.mismatch) the graph goes on replaying, so a
 * generation pays the op-by-op steps (about four per generation, each several times a replay) once
 * per model rather than every time; otherwise it records afresh.
 */
export class CpuGraphDecoder {
  /** graphs built in this process (for tests and diagnostics) */
  static built = 0;
  /** kept graphs a later generation replayed after its first step matched (for tests and diagnostics) */
  static reused = 0;
  /** why the graph was not built (null while recording or once built) */
  failure: string | null = null;
  readonly cache: KVCache;
  private readonly ids: Tensor;
  private readonly positions: Tensor;
  private readonly pool: PoolEntry[] = [];
  private readonly recordings: Recording[] = [];
  private graph: CpuGraph | null = null;
  private first = 0; // the position of the first recorded step
  private warm = false; // the first step has run op by op (it builds the lazy decode state)
  private verify = false; // the graph is kept from an earlier generation: this one's first step is compared with it before replays
  private busy = false; // a generation holds this decoder
  private kept = false; // the model keeps this decoder for its next generation
  private plainOut: { logits: Tensor; argmax: Tensor } | null = null; // a step's own outputs, freed at the next
  private graphOut: { logits: Tensor; argmax: Tensor } | null = null; // the graph's, rewritten by each replay

  private constructor(private readonly model: CausalLM, length: number, backend: string, readonly dtype: DType | undefined) {
    const c = model.config;
    this.cache = new KVCache(c.numLayers, 1, c.numKvHeads, length, c.headDim, { backend, dtype });
    this.ids = keep(tensor([[0]], { dtype: 'int64', backend: 'cpu' }));
    this.positions = keep(tensor([[0]], { dtype: 'int64', backend: 'cpu' }));
  }

  /**
   * A decoder for one generation of at most `length` positions: the one `model` kept, when it is free
   * and its cache long enough, else a new one that the model keeps instead (a cache rounded up to
   * CACHE_ROUNDING positions). While another generation holds the kept one, a private decoder that
   * release() disposes. Its cache starts empty; `dtype` is its cache's (undefined: the keys').
   */
  static acquire(model: CausalLM, length: number, backend: string, dtype?: DType): CpuGraphDecoder {
    const kept = model.attached<CpuGraphDecoder>(KEPT);
    let d: CpuGraphDecoder;
    if (kept && !kept.busy && kept.cache.maxLength >= length && kept.dtype === dtype) d = kept;
    else {
      d = new CpuGraphDecoder(model, Math.ceil(length / CACHE_ROUNDING) * CACHE_ROUNDING, backend, dtype);
      if (!kept?.busy) (d.kept = true), model.attach(KEPT, d);
    }
    d.busy = true;
    d.cache.reset();
    d.verify = d.graph !== null;
    if (d.failure) d.restart(); // a graph that could not be built then may be now (a profiler stopped)
    return d;
  }

  /** The generation is over: a kept decoder stays with the model for the next one, a private one is disposed. */
  release(): void {
    this.busy = false;
    this.releasePlain();
    if (!this.kept) this.dispose();
  }

  private timedReplay(graph: CpuGraph, steps: number): void {
    const kernels = graph.callKernels;
    const times = new Float64Array(kernels.length);
    graph.replay(steps, times);
    kernels.forEach((kernel, j) => addKernel(kernel, `${kernel} (replayed)`, times[j], 0));
  }

  /** The step for `token` at `position` (= the cache's length): the next token's logits [V] and their argmax [1], valid until the next step. */
  step(token: number, position: number): { logits: Tensor; argmax: Tensor } {
    if (position !== this.cache.length) throw new Error(`CpuGraphDecoder: position ${position} is not the cache's length ${this.cache.length}`);
    // filled in place: no tensor made per token for them
    fill_(this.ids, token);
    fill_(this.positions, position);
    this.releasePlain();
    // k.profile times a replay call by call ('... (replayed)' rows); until a graph is built and
    // verified, it times the steps op by op (and a graph stays valid)
    const profiling = isProfiling();
    if (this.graph && !this.verify) {
      if (position + 1 > this.cache.maxLength) throw new Error(`KVCache: ${position} cached + 1 new token exceed the cache length ${this.cache.maxLength}`);
      if (profiling) this.timedReplay(this.graph, position - this.first);
      else this.graph.replay(position - this.first);
      this.cache.advance(1);
      return this.graphOut!;
    }
    if (this.graph && !profiling) return (this.plainOut = this.check(position));
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

  /** A kept graph's first step of a generation, recorded over its blocks: replays go on if it is what a replay would run, else recording starts again. */
  private check(position: number): { logits: Tensor; argmax: Tensor } {
    const rec = new Recording(this.pool, false);
    const out = record(rec, () => this.forward());
    this.verify = false;
    if (this.graph!.mismatch(rec, position - this.first) === null) CpuGraphDecoder.reused++;
    else this.restart();
    return out;
  }

  private forward(): { logits: Tensor; argmax: Tensor } {
    const [logits, next] = nextTokenLogits(this.model, this.ids, this.positions, this.cache);
    return { logits: keep(logits), argmax: keep(next) };
  }

  /** Drops the graph (or the recordings, or the failure) so that the next steps record a new one. */
  private restart(): void {
    this.releaseGraph(); // empties the pool
    this.recordings.length = 0;
    this.failure = null;
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

  private releaseGraph(): void {
    this.graphOut?.logits.dispose();
    this.graphOut?.argmax.dispose();
    this.graphOut = null;
    this.graph?.dispose();
    this.graph = null;
    releasePool(this.pool);
  }

  /** Frees the cache, the graph and its blocks (Module.attach calls it when the model lets go of a kept one). */
  dispose(): void {
    if (this.busy && this.kept) return void (this.kept = false); // its generation disposes it at release()
    this.releasePlain();
    this.releaseGraph();
    this.cache.dispose();
    this.ids.dispose();
    this.positions.dispose();
  }
}
