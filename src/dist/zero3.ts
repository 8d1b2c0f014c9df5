// ZeRO stage 3 (Rajbhandari et al. 2020, "parameter partitioning"): stage 2, and no rank keeps
// the whole model either. Each decoder layer is a unit (zero3_units.ts), and so are the
// embeddings, the final norm and the head; a unit's parameters are flat
// arenas, one per optimizer parameter group (float32 masters, trained) and one per dtype (frozen:
// a LoRA base, a QLoRA base's packed bytes and scales), each padded to N equal shards; rank r keeps
// shard r of each and nothing else of the layer. The trainable shards are the optimizer's
// parameters themselves (the master weights).
//
// Forward: before a layer runs its arenas are all-gathered into full buffers (the next layer's
// gather is started too: prefetch one unit ahead), viewed into the module, and the layer runs on
// the tape (zero3_region.ts). After it the buffers' bytes are evicted (the tape's saved views keep
// the storage, without memory) and the placeholders go back. Backward, in reverse: as the layer's
// backward begins the region gathers it again into the same storage (prefetching the one before);
// each parameter's gradient is copied into the unit's flat gradient as it completes; when the
// layer's backward is done its flat gradients are reduce-scattered into the owner's shard (added
// there: every micro-step reduces, as DeepSpeed's stage 3 does, since no rank may keep a layer's
// full gradient across micro-steps) and the buffers are freed. Nothing is recomputed (activation
// checkpointing, when on, recomputes as it does on one rank; the recomputed unit keeps its bytes
// for the backward that follows). Everything happens inside the synchronous forward and backward,
// so calls are started with the group's blocking start (allGatherNow / reduceScatterNow: each
// waits for the previous call, then starts) and waitNow; their Work handles are awaited in
// finish(), where a failed call surfaces. One call is in flight at a time, so of a prefetched unit
// the arena gathered last overlaps the running layer's compute: a unit's arenas go smallest first
// (the norms, then the matrices).
//
// The forward's last call (the head) keeps its bytes: its backward follows at once, so it is
// gathered once for both.
//
// On one machine (shared memory on) nothing is gathered: each arena's shards are the parts of one
// shared region, padded to whole 64-byte lines so that the parts lie end to end, and the gathered
// arena is that region read whole (ProcessGroup.whole). The ranks meet before the optimizer step
// (no rank writes its shard while a peer still reads it) and before the next forward reads them.
// A unit's gradient is one flat buffer, in a shared region whose two ends backward's units take
// in turn, so that its reduce-scatter reads the peers' in place.
//
// A unit may be used more than once per forward: a tied embedding is the embedding lookup and the
// head. Each use gathers into the same buffers (evicted between uses); the unit's flat gradient
// collects every use's backward and is reduce-scattered only after the last one (a count of the
// uses recorded in forward), so the gradient is complete, as 1 rank's autograd sums both uses.
// Prefetch follows the order of the calls (embeddings, layers, norm, head), not of the units.
//
// Parameters smaller than stage3_param_persistence_threshold stay whole on every rank and go
// through stage 2 (zero2.ts: optimizer state and gradients partitioned), as DeepSpeed keeps small
// parameters persistent (gathering them costs more in latency than their memory is worth), and so
// do parameters of a model outside any unit. stage3_prefetch_bucket_size and
// stage3_max_live_parameters are honoured as limits on the prefetch: a next unit larger than
// either is not prefetched (one unit is always live).
import { zeros } from '../ops/creation.js';
import { empty } from '../ops/dispatch.js';
import { narrow, reshape } from '../ops/view.js';
import { backendOf } from '../backend/index.js';
import { gradSquaredNorm } from '../optim/clip.js';
import type { Module } from '../nn/module.js';
import { isGradEnabled, noGrad } from '../tensor/grad_mode.js';
import { keep, tidy } from '../tensor/scope.js';
import { dtypeBytes } from '../tensor/dtype.js';
import { memory } from '../tensor/memory.js';
import type { Tensor } from '../tensor/tensor.js';
import type { ShardLayout } from '../train/data_parallel.js';
import { piecesIn } from './bucket_plan.js';
import { BucketRegion } from './bucket_region.js';
import { DistributedDataParallel } from './ddp.js';
import { flatten } from './flat.js';
import type { ProcessGroup, Work } from './process_group.js';
import { runGathered } from './zero3_region.js';
import { isBackwardRunning } from '../autograd/engine.js';
import { type UnitCall, type UnitParam, type UnitTensor, findUnits, placeholderOf, swapBack, swapIn, swapOut } from './zero3_units.js';
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
  /** the full buffer (its bytes evicted between a recorded use's forward and backward) */
  full: Tensor | null;
  /** on one machine: every rank's shard end to end (ProcessGroup.whole), the gathered arena without a copy */
  allShards: Tensor | null;
  /** the views put into the module by the latest gather (put back for a backward's recomputation) */
  views: Tensor[];
  /** every view made since the buffer was allocated: the tape's leaves, freed with the buffer */
  allViews: Tensor[];
  /** trainable: where the arena's 1/N block lies in each rank's block of the unit's flat gradient (gradRuns) */
  gradAt: number;
  /** per parameter: whether its gradient reached the flat gradient this backward (the first copies, later ones add) */
  delivered: Uint8Array;
}

interface Unit {
  path: string;
  index: number;
  arenas: Arena[];
  /** bytes of the unit's gathered buffers */
  bytes: number;
  /** released: no buffer; evicted: the buffer without bytes (a recorded use waits for its backward) */
  state: 'released' | 'evicted' | 'fetching' | 'ready';
  pending: number;
  /** uses recorded in forward whose backward has not run yet: the gradient is reduced when the last one has */
  uses: number;
  /** backward only: the trainable arenas' gradients, rank-major (gradRuns), each parameter's copied in as autograd finalizes it */
  grad: Tensor | null;
  /** elements of the trainable arenas together */
  gradLength: number;
}

const numelOf = (ts: readonly UnitTensor[]): number => ts.reduce((n, [, t]) => n + t.numel, 0);

/**
 * Where an arena's elements [from, from + n) lie in its unit's flat gradient, as runs (src: from
 * `from`). The flat gradient is rank-major: block r of every trainable arena, then block r + 1, so
 * that one reduceScatter of the whole unit gives each rank its block of every arena (one call, one
 * meeting of the ranks per layer, not one per arena).
 * @example gradRuns(a, 2, 2, 4, 6) // a.length 8, a.gradAt 2: [{ src: 0, at: 4, length: 2 }, { src: 2, at: 8, length: 2 }]
 */
export function gradRuns(a: Pick<Arena, 'length' | 'gradAt'>, N: number, from: number, n: number, unitBlock: number): { src: number; at: number; length: number }[] {
  const block = a.length / N;
  const runs: { src: number; at: number; length: number }[] = [];
  for (let j = from; j < from + n;) {
    const r = Math.floor(j / block);
    const end = Math.min(from + n, (r + 1) * block);
    runs.push({ src: j - from, at: r * unitBlock + a.gradAt + (j - r * block), length: end - j });
    j = end;
  }
  return runs;
}

export interface ZeroStage3Options {
  bucketBytes?: number;
  /** parameters with fewer elements stay whole on every rank (stage3_param_persistence_threshold; default 0: every unit parameter is partitioned) */
  persistenceThreshold?: number;
  /** the next unit is prefetched only when its gathered bytes are at most this (stage3_prefetch_bucket_size, in elements × 4) */
  prefetchBytes?: number;
  /** ... and when it and the running unit together hold at most this many elements (stage3_max_live_parameters) */
  maxLiveElements?: number;
  /** false: all-gather the units even where the peers' shards can be read in place (default true) */
  inPlace?: boolean;
}

export class ZeroStage3<O = unknown> extends DistributedDataParallel {
  private readonly units: Unit[];
  /** where the units are used, in forward order (the prefetch order) */
  private readonly calls: UnitCall[];
  /** stage 2 over what stays whole (below the persistence threshold, or outside every unit) */
  private readonly whole: ZeroStage2<O>;
  private readonly wholeTrainable: Set<Tensor>;
  /** the optimizer's groups: per parameter group, stage 2's shards (if any) then each unit's trainable shard */
  private readonly groupsOut: { params: Tensor[]; options?: O }[];
  private readonly layoutOrder: { shard: Tensor; pieces: () => ShardLayout['groups'][number]['pieces'] }[];
  private readonly placeholders = new Map<Tensor, Tensor>();
  /** the trainable parameters in the groups' order (a plain checkpoint's optimizer order), as given */
  private readonly groupOrder: Tensor[];
  /** calls started and not yet known to be finished, with what to do once they are */
  private started: (() => void)[] = [];
  /** where the other units' flat gradients fill and reduce-scatter, two at a time */
  private readonly gradRegion: BucketRegion;
  /** each such unit's place in backward's fill order (which end of the region it takes) */
  private readonly fillIndex: Map<Unit, number>;
  /** the units are read in place from the peers' shards (ProcessGroup.whole): one machine, shared memory on */
  private readonly inPlace: boolean;
  /** in place: a shard may have been written (created, loaded, updated) since the ranks last met */
  private shardsWritten = true;
  private works: Work[] = [];

  /**
   * groups: the optimizer's parameter groups over `model`'s parameters, every rank holding the same
   * values (broadcast first). The model's layer parameters are replaced by placeholders and freed.
   */
  constructor(group: ProcessGroup, model: Module, groups: readonly { params: Tensor[]; options?: O }[], private readonly o: ZeroStage3Options = {}) {
    super(group, o.bucketBytes);
    if (group.size > 1 && !group.startsNow)
      throw new Error('ZeRO stage 3 gathers parameters inside the synchronous forward and needs a transport that starts calls there (shared memory or MPI)');
    this.inPlace = group.size > 1 && group.sharesMemory && o.inPlace !== false;
    const { units: found, calls } = findUnits(model, o.persistenceThreshold ?? 0);
    if (!found.length) throw new Error('ZeRO stage 3: the model has no decoder layers (modules at ...layers.<i>) to partition');
    this.calls = calls;
    this.groupOrder = groups.flatMap((g) => g.params);
    const groupOf = new Map<Tensor, number>();
    groups.forEach((g, i) => g.params.forEach((p) => groupOf.set(p, i)));
    const inUnit = new Set(found.flatMap((u) => u.params.map(([, p]) => p)));
    const wholeGroups = groups.map((g) => ({ ...g, params: g.params.filter((p) => !inUnit.has(p)) }));
    this.wholeTrainable = new Set(wholeGroups.flatMap((g) => g.params));
    this.whole = new ZeroStage2(group, wholeGroups, o.bucketBytes, { inPlace: o.inPlace });
    this.units = found.map((u, index) => this.partition(u, index, groupOf));
    // the optimizer sees, per group, stage 2's shards then the units' shards; the checkpoint layout
    // lists them in that order (stage 2's layout lists its shards in the order of its groups')
    const wholeShards = this.whole.shardGroups;
    const wholeLayout = this.whole.shardLayout().groups;
    let w = 0;
    let l = 0;
    this.layoutOrder = [];
    this.groupsOut = groups.map((g, gi) => {
      const params: Tensor[] = [];
      if (wholeGroups[gi].params.length) {
        for (const shard of wholeShards[w++].params) {
          const at = l++;
          params.push(shard);
          this.layoutOrder.push({ shard, pieces: () => wholeLayout[at].pieces });
        }
      }
      for (const u of this.units) for (const a of u.arenas) if (a.group === gi) {
        params.push(a.shard);
        const ph = a.params.map((p) => p.placeholder);
        this.layoutOrder.push({ shard: a.shard, pieces: () => piecesIn(ph, this.rank * (a.length / this.worldSize), a.length / this.worldSize, 0) });
      }
      return { params, ...(g.options === undefined ? {} : { options: g.options }) };
    });
    calls.forEach((c, i) => this.wrap(c, i));
    const useCount = new Map<number, number>();
    for (const c of calls) useCount.set(c.unit, (useCount.get(c.unit) ?? 0) + 1);
    // the single-use units' gradients, in the order backward fills them (the calls reversed); a unit
    // used twice (a tied embedding) has its own buffer, its gradient living across the others' backward
    const filled = [...new Set([...calls].reverse().map((c) => this.units[c.unit]))].filter((u) => u.gradLength > 0 && useCount.get(u.index) === 1);
    this.gradRegion = new BucketRegion(keep(group.shared(BucketRegion.sizeFor(filled.map((u) => u.gradLength)), 'float32', 'grad')));
    this.fillIndex = new Map(filled.map((u, i) => [u, i]));
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
      // read in place, each shard a multiple of 64 bytes, so that the shards lie end to end
      const quantum = this.inPlace ? N * Math.max(1, 64 / dtypeBytes(params[0][1].dtype)) : N;
      const length = Math.ceil(at / quantum) * quantum;
      // in shared memory, so that every gather of the unit reads the peers' shards in place
      const shard = keep(this.group.shared(length / N, params[0][1].dtype, 'param'));
      noGrad(() => tidy(() => backendOf(shard).kernels.copy(narrow(flatten(params.map(([, p]) => p), length), 0, this.rank * (length / N), length / N), shard)));
      const unitParams = params.map(([name, p, slot, buffer]) => {
        const placeholder = placeholderOf(p, name, buffer);
        this.placeholders.set(p, placeholder);
        return { name, placeholder, slot, buffer };
      });
      const allShards = this.inPlace ? keep(this.group.whole(shard)!) : null;
      return { params: unitParams, offsets, length, shard, group, full: null, allShards, views: [], allViews: [], gradAt: 0, delivered: new Uint8Array(unitParams.length) };
    });
    for (const a of arenas) {
      swapOut(a.params);
      for (const [, p] of found.params) if (this.placeholders.has(p)) p.dispose();
    }
    const bytes = arenas.reduce((n, a) => n + a.length * a.shard.storage.bytes / a.shard.numel, 0);
    let gradLength = 0;
    for (const a of arenas) if (a.group >= 0) (a.gradAt = gradLength / N), (gradLength += a.length);
    return { path: found.path, index, arenas, bytes, state: 'released', pending: 0, uses: 0, grad: null, gradLength };
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
      // a forward while a backward runs is a recomputation: the unit before it is the next one needed
      gather: (phase: 'forward' | 'backward') => this.gather(u, phase === 'forward' && !isBackwardRunning() ? next(1) : this.backwardNext(next(-1)), phase),
      recorded: () => void u.uses++,
      reduce: () => this.reduce(u),
      release: (untilBackward?: boolean) => this.release(u, untilBackward === true),
    };
    // the forward's last call (the head) is backpropagated right after it: it keeps its bytes, gathered
    // once for both (reuse distance 0; DeepSpeed's stage3_max_reuse_distance, default 1e9 elements, keeps it too)
    const backwardNext = at === this.calls.length - 1;
    Object.defineProperty(call.owner, call.method, { value: (...args: unknown[]) => runGathered(u.path, original, args, hooks, { backwardNext }), configurable: true, writable: true, enumerable: false });
  }

  /**
   * The unit to prefetch in backward: none when it has nothing to backpropagate (no recorded use, no
   * trainable parameters: a frozen embedding under LoRA); a checkpointed layer (recorded only when
   * recomputed) still has its trainable parameters.
   */
  private backwardNext(u: Unit | undefined): Unit | undefined {
    return u && (u.uses > 0 || u.gradLength > 0) ? u : undefined;
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
    if (u.state !== 'released' && u.state !== 'evicted') return;
    if (this.inPlace) {
      // the peers' shards are read where they are, once every rank's last write to its own is done
      if (this.shardsWritten) this.meet();
      this.shardsWritten = false;
      for (const a of u.arenas) a.full = a.allShards;
      u.state = 'ready';
      return;
    }
    u.state = 'fetching';
    u.pending = u.arenas.length;
    for (const a of u.arenas) {
      // uninitialised: the all-gather writes every element (N shards of the padded length)
      if (a.full) a.full.storage.restore();
      else a.full = memory.withTag('param', () => keep(empty([a.length], a.shard.dtype, { backend: a.shard.backendName })));
      this.start(() => this.group.allGatherNow(a.full!, a.shard), () => void (--u.pending === 0 && (u.state = 'ready')));
    }
  }

  /**
   * Gathers unit u into its module (waiting for it), prefetching `next` when the limits allow. A
   * backward puts back the views its forward recorded (a recomputation inside the unit reads the
   * module); a forward makes new ones, whose gradients go into the arena's flat gradient.
   */
  private gather(u: Unit, next: Unit | undefined, phase: 'forward' | 'backward'): void {
    this.fetch(u);
    const { prefetchBytes = Infinity, maxLiveElements = Infinity } = this.o;
    const live = (x: Unit): number => x.arenas.reduce((n, a) => n + a.length, 0);
    if (next && next !== u && next.bytes <= prefetchBytes && live(u) + live(next) <= maxLiveElements) this.fetch(next);
    if (u.state !== 'ready') this.drain();
    for (const a of u.arenas) {
      if (phase === 'backward' && a.views.length) {
        swapBack(a.params, a.views);
        continue;
      }
      a.views = swapIn(a.params, a.offsets, a.full!);
      a.allViews.push(...a.views);
      if (a.group >= 0 && isGradEnabled()) this.collectGrads(u, a);
    }
  }

  /**
   * Each parameter's gradient goes into the unit's flat gradient (made at the first one, so it
   * lives only while the layer's backward runs) as soon as autograd finalizes it, and is freed
   * (zero2.ts does the same), so a layer's gradient is held once, not twice. The first gradient of
   * a parameter is copied in, later ones (a unit used twice, a parameter used in two inner
   * checkpoint regions) are added: the flat gradient is never zeroed as a whole.
   */
  private collectGrads(u: Unit, a: Arena): void {
    a.views.forEach((v, i) => v.registerHook((g) => {
      const flat = this.flatGrad(u);
      noGrad(() => tidy(() => {
        const src = reshape(g, [v.numel]);
        for (const run of gradRuns(a, this.worldSize, a.offsets[i], v.numel, u.gradLength / this.worldSize)) {
          const [piece, slot] = [narrow(src, 0, run.src, run.length), narrow(flat, 0, run.at, run.length)];
          if (a.delivered[i]) backendOf(v).kernels.binary('add', slot, piece, slot);
          else backendOf(v).kernels.copy(piece, slot);
        }
      }));
      a.delivered[i] = 1;
      v.zeroGrad();
    }));
  }

  /**
   * The unit's flat gradient: a place in the gradient region (shared memory: the reduce-scatter
   * reads the peers' in place; backward's units alternate between its two ends), or a buffer of its
   * own for a unit used twice, whose gradient lives across the others' backward.
   */
  private flatGrad(u: Unit): Tensor {
    if (u.grad) return u.grad;
    for (const a of u.arenas) a.delivered.fill(0);
    const backend = u.arenas[0].shard.backendName;
    const at = this.fillIndex.get(u);
    // a place still read by a reduce-scatter in flight (a unit finished at the end of the previous
    // micro-step's backward) is free once that call is done
    if (at !== undefined && !this.gradRegion.fits(at, u.gradLength)) this.drain();
    u.grad = memory.withTag('grad', () => keep(at === undefined
      ? empty([u.gradLength], 'float32', { backend })
      : this.gradRegion.acquire(u, at, u.gradLength, u.gradLength, backend)));
    return u.grad;
  }

  /** After a unit's last use's backward: one reduceScatter of its flat gradient (collected by collectGrads) gives this rank its block of every trainable arena, added into the arenas' shard gradients. */
  private reduce(u: Unit): void {
    if (--u.uses > 0) return;
    const flat = u.grad;
    if (!flat) return;
    u.grad = null;
    const N = this.worldSize;
    const unitBlock = u.gradLength / N;
    const arenas = u.arenas.filter((a) => a.group >= 0);
    noGrad(() => tidy(() => {
      // what no gradient reached (a parameter unused this step, the padding) is zero
      const zero = (a: Arena, from: number, n: number): void => {
        for (const run of gradRuns(a, N, from, n, unitBlock)) backendOf(flat).kernels.fill(narrow(flat, 0, run.at, run.length), 0);
      };
      for (const a of arenas) {
        a.params.forEach((p, i) => a.delivered[i] || zero(a, a.offsets[i], p.placeholder.numel));
        const used = a.params.length ? a.offsets[a.params.length - 1] + a.params[a.params.length - 1].placeholder.numel : 0;
        zero(a, used, a.length - used);
      }
    }));
    const part = memory.withTag('grad', () => keep(empty([unitBlock], 'float32', { backend: flat.backendName }))); // reduceScatter writes it all
    this.start(() => this.group.reduceScatterNow(part, flat, 'sum'), () => {
      this.gradRegion.release(u);
      flat.dispose();
      noGrad(() => {
        for (const a of arenas) {
          const block = keep(narrow(part, 0, a.gradAt, a.length / N));
          if (!a.shard.grad) a.shard.grad = block; // a view of the unit's part, which lives while any arena's does
          else {
            backendOf(block).kernels.binary('add', a.shard.grad, block, a.shard.grad);
            block.dispose();
          }
        }
      });
      part.dispose();
    });
  }

  /**
   * Placeholders back into the module. The bytes stay when `untilBackward` (the unit's backward
   * comes next); they are evicted while a recorded use still waits for its backward (its saved
   * views keep the storage); else the buffers and views go.
   */
  private release(u: Unit, untilBackward = false): void {
    for (const a of u.arenas) swapOut(a.params);
    if (untilBackward) {
      u.state = 'ready';
      return;
    }
    if (u.uses > 0) {
      for (const a of u.arenas) if (!a.allShards) a.full!.storage.evict(); // read in place, there is nothing of its own to drop
      u.state = 'evicted';
      return;
    }
    this.free(u);
  }

  private free(u: Unit): void {
    for (const a of u.arenas) {
      for (const v of a.allViews) v.dispose();
      a.allViews = [];
      a.views = [];
      if (!a.allShards) a.full?.dispose();
      a.full = null;
    }
    u.state = 'released';
  }

  /** Every rank here (a blocking barrier, after the calls in flight): orders the in-place reads of a shard against its owner's writes. */
  private meet(): void {
    this.start(() => this.group.barrierNow(), () => {});
    this.drain();
  }

  /** A unit kept or evicted for a backward that never came (it would be stale after the update) is freed; its calls are drained first. */
  private releaseKept(): void {
    this.drain();
    for (const u of this.units) if (u.state !== 'released') this.free(u);
  }

  override arm(params: readonly Tensor[]): void {
    this.whole.arm(params.filter((p) => this.wholeTrainable.has(p)));
  }

  override async finish(params: readonly Tensor[]): Promise<void> {
    this.drain();
    // a forward whose backward never ran (or failed part way) leaves uses and a partial gradient: dropped
    for (const u of this.units) {
      u.uses = 0;
      if (u.grad) (this.gradRegion.release(u), u.grad.dispose(), (u.grad = null));
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
    // in place: no rank may update its shards while a peer still reads them
    if (this.inPlace) this.meet();
    this.shardsWritten = true;
    for (const u of this.units) for (const a of u.arenas)
      if (a.group >= 0 && !a.shard.grad) a.shard.grad = memory.withTag('grad', () => keep(zeros([a.shard.numel], { backend: a.shard.backendName })));
  }

  /** The units' shards are the masters (gathered at the next forward); stage 2 rebuilds what stays whole. */
  override async afterOptimizerStep(): Promise<void> {
    await this.whole.afterOptimizerStep();
  }

  /** Every shard as a sharded checkpoint's group: the layers' values live only here (the model file of a stage-3 checkpoint lacks them). */
  override shardLayout(): ShardLayout {
    this.shardsWritten = true; // a resume writes the shards through it: read in place only after the ranks meet
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
      noGrad(() => this.gather(u, undefined, 'forward'));
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
