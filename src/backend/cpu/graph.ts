// CPU graphs: the native kernel calls of one decode step, recorded and replayed, so that a decoded
// token costs one call into the addon instead of a few hundred, each with its TypeScript around it
// (op dispatch, views, scopes: about a third of a small model's batch-1 decode step on two cores).
// CUDA graphs' idea (src/infer/graph_decode.ts) on the CPU; src/infer/cpu_graph_decode.ts uses it.
//
// While a Recording is active, Packer.call appends every call's packed arguments to it, and the
// backend's allocations come from its pool: the first recording keeps every block the step allocates
// (freeing none of them), later recordings take the same blocks in the same order. Three
// consecutive steps are recorded. Their arguments then differ only where the decode position moves
// them, in a view's offset (where the new key and value are written) and lengths (how many keys
// attention reads); the first two give the per-step delta and the third must equal the first plus
// twice that delta, or the step is not affine in the position and is not replayed. Anything a replay
// could not reproduce ends the recording with its reason: a value read back to TypeScript, an upload
// whose data changes between steps, a different sequence of calls or allocations, or a number
// other than a view's offset, shape or stride that changes.
import type { DType, TypedArray } from '../../tensor/dtype.js';
import type { Storage } from '../../tensor/storage.js';
import type { NativeAddon } from '../addon.js';

/** A block of the recorded step, and the data uploaded into it (null: allocated, not uploaded). */
export interface PoolEntry {
  storage: Storage;
  data: TypedArray | null;
}

let active: Recording | null = null;

/** The recording in progress, or null. */
export const activeRecording = (): Recording | null => active;

/** One step's calls (each as kernel id, argument count, arguments) and the indices of its movable arguments. */
export class Recording {
  readonly calls: number[] = [];
  readonly movable: number[] = [];
  failure: string | null = null;
  private taken = 0;

  /** `pool` is shared by the recordings of one graph; the first one (empty pool) fills it. */
  constructor(private readonly pool: PoolEntry[], private readonly first: boolean) {}

  fail(why: string): void {
    this.failure ??= why;
  }

  /** Appends one call: `kinds[i]` is 1 where argument i is a view's offset, shape or stride. */
  push(id: number, args: Float64Array, kinds: Uint8Array, n: number): void {
    const at = this.calls.length + 2;
    this.calls.push(id, n);
    for (let i = 0; i < n; i++) {
      this.calls.push(args[i]);
      if (kinds[i]) this.movable.push(at + i);
    }
  }

  /** A block for one allocation of the step: a new one kept in the pool (first recording), else the same one as then. */
  alloc(dtype: DType, numel: number, make: () => Storage): Storage {
    if (this.first) return this.keep(make(), null);
    return this.reuse(dtype, numel, null) ?? make();
  }

  /** A block for `data` (the caller writes it): as alloc, and the data must be what the first recording uploaded. */
  upload(dtype: DType, data: TypedArray, make: () => Storage): Storage {
    if (this.first) return this.keep(make(), data.slice());
    return this.reuse(dtype, data.length, data) ?? make();
  }

  private keep(s: Storage, data: TypedArray | null): Storage {
    if (this.failure) return s;
    this.pool.push({ storage: s.retain(), data });
    return s;
  }

  private reuse(dtype: DType, numel: number, data: TypedArray | null): Storage | null {
    if (this.failure) return null;
    const e = this.pool[this.taken++];
    const was = e ? `${e.storage.dtype}[${e.storage.numel}]${e.data ? ' uploaded' : ''}` : 'nothing';
    if (!e || e.storage.dtype !== dtype || e.storage.numel !== numel || !e.data !== !data) {
      this.fail(`allocation ${this.taken} of the step is ${dtype}[${numel}]${data ? ' uploaded' : ''} where the first recorded step made ${was}`);
      return null;
    }
    if (data && !e.data!.every((x, i) => x === data[i])) {
      this.fail(`allocation ${this.taken} of the step uploads data that changes from step to step`);
      return null;
    }
    return e.storage.retain();
  }

  /** True when every allocation of the first recording was taken again. */
  get complete(): boolean {
    return this.first || this.taken === this.pool.length;
  }
}

/** Runs fn with `rec` recording (one recording at a time; none nests). */
export function record<T>(rec: Recording, fn: () => T): T {
  if (active) throw new Error('CPU graph: a recording is already in progress');
  active = rec;
  try {
    return fn();
  } finally {
    active = null;
  }
}

/** A replayable step: the first recording's calls, and the arguments that move by a fixed delta per position. */
export class CpuGraph {
  private constructor(
    private readonly addon: NativeAddon,
    private readonly calls: Float64Array,
    private readonly patchAt: Int32Array,
    private readonly patchDelta: Float64Array,
    private readonly pool: PoolEntry[],
  ) {}

  private disposed = false;

  /**
   * The graph of three recordings of consecutive steps (sharing `pool`), or why they cannot be one.
   * On failure the pool's blocks are released.
   */
  static build(addon: NativeAddon, pool: PoolEntry[], recs: [Recording, Recording, Recording]): CpuGraph | string {
    const why = CpuGraph.check(addon, recs);
    if (why !== null) {
      releasePool(pool);
      return why;
    }
    const [a, b] = recs.map((r) => r.calls);
    const at: number[] = [], delta: number[] = [];
    for (const i of recs[0].movable)
      if (a[i] !== b[i]) at.push(i), delta.push(b[i] - a[i]);
    return new CpuGraph(addon, Float64Array.from(a), Int32Array.from(at), Float64Array.from(delta), pool);
  }

  private static check(addon: NativeAddon, recs: Recording[]): string | null {
    for (const r of recs) if (r.failure) return r.failure;
    if (!recs.every((r) => r.complete)) return 'a later step allocated fewer blocks than the first';
    const [a, b, c] = recs.map((r) => r.calls);
    if (b.length !== a.length || c.length !== a.length) return `the steps made different calls (${a.length}, ${b.length}, ${c.length} numbers)`;
    const movable = new Set(recs[0].movable);
    for (let i = 0, call = 0; i < a.length; call++) {
      const [id, n] = [a[i], a[i + 1]];
      const name = addon.kernels[id] ?? `#${id}`;
      if (b[i] !== id || c[i] !== id || b[i + 1] !== n || c[i + 1] !== n) return `call ${call} (${name}) differs between the steps`;
      for (let j = i + 2; j < i + 2 + n; j++) {
        if (a[j] === b[j] && b[j] === c[j]) continue;
        if (!movable.has(j)) return `call ${call} (${name}): argument ${j - i - 2} changes between steps and is not a view's offset, shape or stride`;
        if (c[j] - a[j] !== 2 * (b[j] - a[j])) return `call ${call} (${name}): argument ${j - i - 2} does not move by a fixed step (${a[j]}, ${b[j]}, ${c[j]})`;
      }
      i += 2 + n;
    }
    return null;
  }

  /**
   * Why `rec`, a recording of the step `steps` positions after the first recorded one (taking the
   * pool's blocks), is not the step a replay at `steps` runs, or null when it is: the same calls with
   * the same arguments, the movable ones where the per-step deltas put them. A graph kept from an
   * earlier generation is replayed only after one such step, so any change in what a step calls (other
   * weights, dtypes, settings, a longer cache) records the graph afresh instead.
   */
  mismatch(rec: Recording, steps: number): string | null {
    if (rec.failure) return rec.failure;
    if (!rec.complete) return 'the step allocated fewer blocks than the recorded one';
    const got = rec.calls;
    if (got.length !== this.calls.length) return `the step made other calls (${got.length} numbers, recorded ${this.calls.length})`;
    const want = Float64Array.from(this.calls);
    for (let i = 0; i < this.patchAt.length; i++) want[this.patchAt[i]] += this.patchDelta[i] * steps;
    const at = want.findIndex((x, i) => x !== got[i]);
    return at < 0 ? null : `argument ${at} of the step is ${got[at]} where a replay would pass ${want[at]}`;
  }

  /** Runs the step `steps` positions after the first recorded one; with `times` (one per call), adds each call's ms to it. */
  replay(steps: number, times?: Float64Array): void {
    if (this.disposed) throw new Error('CPU graph: replay after dispose');
    this.addon.runProgram(this.calls, this.patchAt, this.patchDelta, steps, times);
  }

  /** The kernel of each call, in order (k.profile's rows of a timed replay); the calls never change, so found once. */
  get callKernels(): readonly string[] {
    if (!this.kernelNames) {
      this.kernelNames = [];
      for (let i = 0; i < this.calls.length; i += 2 + this.calls[i + 1]) this.kernelNames.push(this.addon.kernels[this.calls[i]] ?? `#${this.calls[i]}`);
    }
    return this.kernelNames;
  }
  private kernelNames: string[] | null = null;

  /** How many arguments move with the position (for tests and diagnostics). */
  get patches(): number {
    return this.patchAt.length;
  }

  dispose(): void {
    this.disposed = true;
    releasePool(this.pool);
  }
}

/** Lets go of a pool's blocks (each is freed when its last tensor is). */
export function releasePool(pool: PoolEntry[]): void {
  for (const e of pool.splice(0)) e.storage.release();
}
