// ZeRO stage 3 (Rajbhandari et al. 2020, "parameter partitioning"): stage 2, and no rank keeps
// the whole model either. Each decoder layer is a unit (zero3_units.ts), and so are the
// embeddings, the final norm and the head; a unit's parameters are flat
// arenas, one per optimizer parameter group (float32 masters, trained) and one per dtype (frozen:
// a LoRA base, a QLoRA base's packed bytes and scales), each padded to N equal shards; rank r keeps
// shard r of each and nothing else of the layer. The trainable shards are the optimizer's
// parameters themselves (the master weights).
//
// Forward: before a layer runs its arenas are all-gathered into full buffers (the next layer's
// gather is started too: prefetch one unit ahead), viewed into the module, and released after the
// layer's forward. Backward, in reverse: zero3_region.ts gathers the layer again (prefetching the
// one before it), recomputes and backpropagates it, reduce-scatters each trainable arena's
// gradient into the owner's shard (added there: every micro-step reduces, as DeepSpeed's stage 3
// does, since no rank may keep a layer's full gradient across micro-steps) and releases it.
// Everything happens inside the synchronous forward and backward, so calls are started with the
// group's blocking start (allGatherNow / reduceScatterNow: each waits for the previous call, then
// starts) and waitNow; their Work handles are awaited in finish(), where a failed call surfaces.
// One call is in flight at a time, so of a prefetched unit the arena gathered last overlaps the
// running layer's compute: a unit's arenas go smallest first (the norms, then the matrices).
//
// The forward's last call (the head) runs on the tape instead (zero3_region.ts runRecorded): its
// backward follows at once, so it is gathered once and not recomputed.
//
// A unit may be used more than once per forward: a tied embedding is the embedding lookup and the
// head. Each use is its own region (gathered, released); the unit's flat gradient collects every
// use's backward and is reduce-scattered only after the last one (a count of the uses recorded in
// forward), so the gradient is complete, as 1 rank's autograd sums both uses. Prefetch follows the
// order of the calls (embeddings, layers, norm, head), not of the units.
//
// Parameters smaller than stage3_param_persistence_threshold stay whole on every rank and go
// through stage 2 (zero2.ts: optimizer state and gradients partitioned), as DeepSpeed keeps small
// parameters persistent (gathering them costs more in latency than their memory is worth), and so
// do parameters of a model outside any unit. stage3_prefetch_bucket_size and
// stage3_max_live_parameters are honoured as limits on the prefetch: a next unit larger than
// either is not prefetched (one unit is always live).
import { zeros } from '../ops/creation.js';
import { empty } from '../ops/dispatch.js';
import { add } from '../ops/elementwise.js';
import { narrow, reshape } from '../ops/view.js';
import { backendOf } from '../backend/index.js';
import { gradSquaredNorm } from '../optim/clip.js';
import type { Module } from '../nn/module.js';
import { noGrad } from '../tensor/grad_mode.js';
import { keep, tidy } from '../tensor/scope.js';
import { memory } from '../tensor/memory.js';
import type { Tensor } from '../tensor/tensor.js';
import type { ShardLayout } from '../train/data_parallel.js';
import { piecesIn } from './bucket_plan.js';
import { DistributedDataParallel } from './ddp.js';
import { flatten } from './flat.js';
import type { ProcessGroup, Work } from './process_group.js';
import { runGathered } from './zero3_region.js';
import { type UnitCall, type UnitParam, type UnitTensor, findUnits, placeholderOf, swapIn, swapOut } from './zero3_units.js';
import { ZeroStage2 } from './zero2.js';

/** One flat arena of a unit: parameters end to end, padded to N equal shards; this rank's shard. */
interface Arena {
  params: UnitParam[];
  offsets: number[];
  /** elements, a multiple of the world size */
  length: number;
  shard: Tensor;
  /** the optimizer group index (trainable), or -1 (frozen) */
  group: number;
  /** while gathered: the full buffer and the views put into the module */
  full: Tensor | null;
  views: Tensor[];
  /** backward only (trainable arenas): the layer's gradient, each parameter's copied in by a grad-ready hook as it completes */
  grad: Tensor | null;
}

interface Unit {
  path: string;
  index: number;
  arenas: Arena[];
  /** bytes of the unit's gathered buffers */
  bytes: number;
  state: 'released' | 'fetching' | 'ready';
  pending: number;
  /** uses recorded in forward whose backward has not run yet: the gradient is reduced when the last one has */
  uses: number;
}

const numelOf = (ts: readonly UnitTensor[]): number => ts.reduce((n, [, t]) => n + t.numel, 0);

export interface ZeroStage3Options {
  bucketBytes?: number;
  /** parameters with fewer elements stay whole on every rank (stage3_param_persistence_threshold; default 0: every unit parameter is partitioned) */
  persistenceThreshold?: number;
  /** the next unit is prefetched only when its gathered bytes are at most this (stage3_prefetch_bucket_size, in elements × 4) */
  prefetchBytes?: number;
  /** ... and when it and the running unit together hold at most this many elements (stage3_max_live_parameters) */
  maxLiveElements?: number;
}

export class ZeroStage3<O = unknown> extends DistributedDataParallel {
  private readonly units: Unit[];
  /** where the units are used, in forward order (the prefetch order) */
  private readonly calls: UnitCall[];
  /** stage 2 over what stays whole (below the persistence threshold, or outside every unit) */
  private readonly whole: ZeroStage2<O>;
  private readonly wholeTrainable: Set<Tensor>;
  /** the optimizer's groups: per parameter group, stage 2's shard (if any) then each unit's trainable shard */
  private readonly groupsOut: { params: Tensor[]; options?: O }[];
  private readonly layoutOrder: { shard: Tensor; pieces: () => ShardLayout['groups'][number]['pieces'] }[];
  private readonly placeholders = new Map<Tensor, Tensor>();
  /** the trainable parameters in the groups' order (a plain checkpoint's optimizer order), as given */
  private readonly groupOrder: Tensor[];
  /** calls started and not yet known to be finished, with what to do once they are */
  private started: (() => void)[] = [];
  private works: Work[] = [];

  /**
   * groups: the optimizer's parameter groups over `model`'s parameters, every rank holding the same
   * values (broadcast first). The model's layer parameters are replaced by placeholders and freed.
   */
  constructor(group: ProcessGroup, model: Module, groups: readonly { params: Tensor[]; options?: O }[], private readonly o: ZeroStage3Options = {}) {
    super(group, o.bucketBytes);
    if (group.size > 1 && !group.startsNow)
      throw new Error('ZeRO stage 3 gathers parameters inside the synchronous forward and needs a transport that starts calls there (shared memory or MPI)');
    const { units: found, calls } = findUnits(model, o.persistenceThreshold ?? 0);
    if (!found.length) throw new Error('ZeRO stage 3: the model has no decoder layers (modules at ...layers.<i>) to partition');
    this.calls = calls;
    this.groupOrder = groups.flatMap((g) => g.params);
    const groupOf = new Map<Tensor, number>();
    groups.forEach((g, i) => g.params.forEach((p) => groupOf.set(p, i)));
    const inUnit = new Set(found.flatMap((u) => u.params.map(([, p]) => p)));
    const wholeGroups = groups.map((g) => ({ ...g, params: g.params.filter((p) => !inUnit.has(p)) }));
    this.wholeTrainable = new Set(wholeGroups.flatMap((g) => g.params));
    this.whole = new ZeroStage2(group, wholeGroups, o.bucketBytes);
    this.units = found.map((u, index) => this.partition(u, index, groupOf));
    // the optimizer sees, per group, stage 2's shard then the units' shards; the checkpoint layout lists them in that order
    const wholeShards = this.whole.shardGroups;
    const wholeLayout = this.whole.shardLayout().groups;
    let w = 0;
    this.layoutOrder = [];
    this.groupsOut = groups.map((g, gi) => {
      const params: Tensor[] = [];
      if (wholeGroups[gi].params.length) {
        const at = w++;
        params.push(wholeShards[at].params[0]);
        this.layoutOrder.push({ shard: wholeShards[at].params[0], pieces: () => wholeLayout[at].pieces });
      }
      for (const u of this.units) for (const a of u.arenas) if (a.group === gi) {
        params.push(a.shard);
        const ph = a.params.map((p) => p.placeholder);
        this.layoutOrder.push({ shard: a.shard, pieces: () => piecesIn(ph, this.rank * (a.length / this.worldSize), a.length / this.worldSize, 0) });
      }
      return { params, ...(g.options === undefined ? {} : { options: g.options }) };
    });
    calls.forEach((c, i) => this.wrap(c, i));
  }

  /** The groups to build the optimizer over (this rank's shards, with each group's options). */
  get shardGroups(): { params: Tensor[]; options?: O }[] {
    return this.groupsOut;
  }

  /** A model parameter's stand-in once partitioned (the parameter itself when it stays whole). */
  standIn(p: Tensor): Tensor {
    return this.placeholders.get(p) ?? p;
  }

  /** Elements of this rank's partitioned parameters (every unit's arenas' shards). */
  get shardNumel(): number {
    return this.units.reduce((n, u) => n + u.arenas.reduce((m, a) => m + a.shard.numel, 0), 0);
  }

  /** How many units are partitioned (layers, embeddings, norm, head). */
  get unitCount(): number {
    return this.units.length;
  }

  /** Cuts a layer's parameters into arenas, keeps this rank's shards, and frees the rest. */
  private partition(found: ReturnType<typeof findUnits>['units'][number], index: number, groupOf: Map<Tensor, number>): Unit {
    const N = this.worldSize;
    const byKey = new Map<string, { group: number; params: UnitTensor[] }>();
    for (const entry of found.params) {
      const [name, p] = entry;
      const g = p.requiresGrad ? groupOf.get(p) : -1;
      if (g === undefined) throw new Error(`ZeRO stage 3: trainable parameter '${name}' is in no optimizer parameter group`);
      if (g >= 0 && p.dtype !== 'float32') throw new Error(`ZeRO stage 3: trainable parameter '${name}' is ${p.dtype}; trainable parameters must be float32 (master weights)`);
      const key = g >= 0 ? `g${g}` : p.dtype;
      const arena = byKey.get(key) ?? { group: g, params: [] };
      arena.params.push(entry);
      byKey.set(key, arena);
    }
    const arenas: Arena[] = [...byKey.values()].sort((a, b) => numelOf(a.params) - numelOf(b.params)).map(({ group, params }) => {
      const offsets: number[] = [];
      let at = 0;
      for (const [, p] of params) (offsets.push(at), (at += p.numel));
      const length = Math.ceil(at / N) * N;
      // in shared memory, so that every gather of the unit reads the peers' shards in place
      const shard = keep(this.group.shared(length / N, params[0][1].dtype, 'param'));
      noGrad(() => tidy(() => backendOf(shard).kernels.copy(narrow(flatten(params.map(([, p]) => p), length), 0, this.rank * (length / N), length / N), shard)));
      const unitParams = params.map(([name, p, slot, buffer]) => {
        const placeholder = placeholderOf(p, name, buffer);
        this.placeholders.set(p, placeholder);
        return { name, placeholder, slot, buffer };
      });
      return { params: unitParams, offsets, length, shard, group, full: null, views: [], grad: null };
    });
    for (const a of arenas) {
      swapOut(a.params);
      for (const [, p] of found.params) if (this.placeholders.has(p)) p.dispose();
    }
    const bytes = arenas.reduce((n, a) => n + a.length * a.shard.storage.bytes / a.shard.numel, 0);
    return { path: found.path, index, arenas, bytes, state: 'released', pending: 0, uses: 0 };
  }

  /**
   * The call goes through runGathered (an own property over the class's method: Kestrel modules
   * have no forward hooks, and this keeps the model files unchanged).
   */
  private wrap(call: UnitCall, at: number): void {
    const u = this.units[call.unit];
    const original = (Reflect.get(call.owner, call.method) as (...a: unknown[]) => unknown).bind(call.owner);
    const next = (d: 1 | -1): Unit | undefined => {
      const c = this.calls[at + d];
      return c && this.units[c.unit];
    };
    const hooks = {
      gather: (phase: 'forward' | 'backward' | 'recorded') => this.gather(u, phase === 'recorded' ? undefined : next(phase === 'forward' ? 1 : -1), phase !== 'forward'),
      recorded: () => void u.uses++,
      reduce: () => this.reduce(u),
      release: (untilBackward?: boolean) => this.release(u, untilBackward === true),
    };
    // the forward's last call (the head) is backpropagated right after it: it runs on the tape, gathered
    // once for both (reuse distance 0; DeepSpeed's stage3_max_reuse_distance, default 1e9 elements, keeps it too)
    const recorded = at === this.calls.length - 1;
    Object.defineProperty(call.owner, call.method, { value: (...args: unknown[]) => runGathered(u.path, original, args, hooks, { recorded }), configurable: true, writable: true, enumerable: false });
  }

  /** Starts a call (blocking until the previous ones finish, whose completions then run). */
  private start(begin: () => Work, done: () => void): void {
    const w = begin();
    this.works.push(w);
    const finished = this.started;
    this.started = [done];
    for (const f of finished) f();
  }

  /** Blocks until every started call is finished and runs their completions. */
  private drain(): void {
    if (!this.started.length) return;
    if (this.worldSize > 1) this.group.waitNow();
    const finished = this.started;
    this.started = [];
    for (const f of finished) f();
  }

  private fetch(u: Unit): void {
    if (u.state !== 'released') return;
    u.state = 'fetching';
    u.pending = u.arenas.length;
    for (const a of u.arenas) {
      // uninitialised: the all-gather writes every element (N shards of the padded length)
      a.full = memory.withTag('param', () => keep(empty([a.length], a.shard.dtype, { backend: a.shard.backendName })));
      this.start(() => this.group.allGatherNow(a.full!, a.shard), () => void (--u.pending === 0 && (u.state = 'ready')));
    }
  }

  /** Gathers unit u into its module (waiting for it), prefetching `next` (the unit of the next call) when the limits allow. */
  private gather(u: Unit, next: Unit | undefined, backward: boolean): void {
    this.fetch(u);
    const { prefetchBytes = Infinity, maxLiveElements = Infinity } = this.o;
    const live = (x: Unit): number => x.arenas.reduce((n, a) => n + a.length, 0);
    if (next && next !== u && next.bytes <= prefetchBytes && live(u) + live(next) <= maxLiveElements) this.fetch(next);
    if (u.state !== 'ready') this.drain();
    for (const a of u.arenas) {
      a.views = swapIn(a.params, a.offsets, a.full!);
      if (backward && a.group >= 0) this.collectGrads(a);
    }
  }

  /**
   * Backward: each parameter's gradient goes into the arena's flat gradient as soon as the
   * recomputation's backward finalizes it, and is freed (zero2.ts does the same), so a layer's
   * gradient is held once, not twice.
   */
  private collectGrads(a: Arena): void {
    // a unit used twice (tied embeddings) adds its second use's gradient into the first's
    const flat = (a.grad ??= memory.withTag('grad', () => keep(zeros([a.length], { backend: a.shard.backendName }))));
    // added, not copied: a parameter used in two inner checkpoint regions gets a hook call from each
    a.views.forEach((v, i) => v.registerHook((g) => {
      noGrad(() => tidy(() => {
        const slot = reshape(narrow(flat, 0, a.offsets[i], v.numel), v.shape);
        backendOf(v).kernels.binary('add', slot, g, slot);
      }));
      v.zeroGrad();
    }));
  }

  /** After a unit's last use's backward: reduce-scatters each trainable arena's gradient (collected by collectGrads) into this rank's shard gradient. */
  private reduce(u: Unit): void {
    if (--u.uses > 0) return;
    const N = this.worldSize;
    for (const a of u.arenas) {
      if (a.group < 0 || !a.grad) continue;
      const flat = a.grad;
      a.grad = null;
      const part = memory.withTag('grad', () => keep(empty([a.length / N], 'float32', { backend: flat.backendName }))); // reduceScatter writes it all
      this.start(() => this.group.reduceScatterNow(part, flat, 'sum'), () => {
        flat.dispose();
        noGrad(() => {
          if (!a.shard.grad) a.shard.grad = part;
          else {
            const sum = memory.withTag('grad', () => keep(add(a.shard.grad!, part)));
            a.shard.grad.dispose();
            part.dispose();
            a.shard.grad = sum;
          }
        });
      });
    }
  }

  /**
   * Placeholders back into the module; the gathered buffers go once nothing holds them. `untilBackward`
   * (a recorded forward): the views and buffers stay, in state 'ready', until the unit's backward releases it.
   */
  private release(u: Unit, untilBackward = false): void {
    for (const a of u.arenas) {
      swapOut(a.params);
      if (untilBackward) continue;
      for (const v of a.views) v.dispose();
      a.views = [];
      a.full?.dispose();
      a.full = null;
    }
    u.state = untilBackward ? 'ready' : 'released';
  }

  /** A unit still gathered for a backward that never came (it would be stale after the update) is freed. */
  private releaseKept(): void {
    for (const u of this.units) if (u.state === 'ready') this.release(u);
  }

  override arm(params: readonly Tensor[]): void {
    this.whole.arm(params.filter((p) => this.wholeTrainable.has(p)));
  }

  override async finish(params: readonly Tensor[]): Promise<void> {
    this.drain();
    // a forward whose backward never ran (or failed part way) leaves uses and a partial gradient: dropped
    for (const u of this.units) {
      u.uses = 0;
      for (const a of u.arenas) (a.grad?.dispose(), (a.grad = null));
    }
    this.releaseKept();
    const works = this.works;
    this.works = [];
    for (const w of works) await w;
    await this.whole.finish(params.filter((p) => this.wholeTrainable.has(p)));
  }

  /** sqrt of the sum over ranks of every shard's sum(g²) (padding is zero): the global norm. */
  override async gradNorm(): Promise<number> {
    const shards = this.groupsOut.flatMap((g) => g.params);
    const mine = shards.reduce((s, t) => s + (t.grad ? gradSquaredNorm(t.grad) : 0), 0);
    const [all] = await this.sum([mine]);
    return Math.sqrt(all);
  }

  override scaleGrads(_params: readonly Tensor[], factor: number): void {
    super.scaleGrads(this.groupsOut.flatMap((g) => g.params).filter((t) => t.grad), factor);
  }

  /** A shard whose layer took no part in this step's backward gets a zero gradient (the optimizer still steps it, as at stage 2). */
  override beforeOptimizerStep(): void {
    this.releaseKept();
    for (const u of this.units) for (const a of u.arenas)
      if (a.group >= 0 && !a.shard.grad) a.shard.grad = memory.withTag('grad', () => keep(zeros([a.shard.numel], { backend: a.shard.backendName })));
  }

  /** The units' shards are the masters (gathered at the next forward); stage 2 rebuilds what stays whole. */
  override async afterOptimizerStep(): Promise<void> {
    await this.whole.afterOptimizerStep();
  }

  /** Every shard as a sharded checkpoint's group: the layers' values live only here (the model file of a stage-3 checkpoint lacks them). */
  override shardLayout(): ShardLayout {
    return {
      stage: 3,
      params: this.groupOrder.map((p) => this.standIn(p)),
      groups: this.layoutOrder.map((l) => ({ shard: l.shard, pieces: l.pieces() })),
    };
  }

  /**
   * Gathers the units one at a time (every rank calls it, after training) and hands each one's
   * parameters, by name, to fn before releasing them: a save that never holds the whole model.
   */
  eachUnit(fn: (named: [string, Tensor][]) => void): void {
    this.drain();
    for (const u of this.units) {
      this.gather(u, undefined, false);
      try {
        fn(u.arenas.flatMap((a) => a.params.map((p, i): [string, Tensor] => [p.name, a.views[i]])));
      } finally {
        this.release(u);
      }
    }
    this.drain();
  }

  /**
   * Puts every layer's trainable parameters (LoRA adapters: small) back into the model for good,
   * so code that reads them after training (saveAdapter) sees values; frozen ones stay partitioned.
   */
  gatherTrainable(): void {
    this.drain();
    for (const u of this.units) for (const a of u.arenas) {
      if (a.group < 0) continue;
      const full = memory.withTag('param', () => keep(zeros([a.length], { backend: a.shard.backendName })));
      this.start(() => this.group.allGatherNow(full, a.shard), () => {});
      this.drain();
      swapIn(a.params, a.offsets, full);
      full.dispose(); // the views hold it
    }
  }
}
