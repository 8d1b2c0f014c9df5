// ProcessGroup: torch.distributed's collectives on Kestrel tensors, in place, each returning a
// Work handle (await it, or keep computing and `await work.wait()` later). Peer ranks are global
// ranks, as in torch. The bytes move through a Transport (transport.ts); this file checks shapes
// and dtypes so that a mismatch is an error here, on the rank that made it.
import { zeros } from '../ops/creation.js';
import { type DType, dtypeBytes, isFloat } from '../tensor/dtype.js';
import { type MemoryTag, currentTag } from '../tensor/memory.js';
import type { Tensor } from '../tensor/tensor.js';
import type { Collective, ReduceOp, Transport, TransportCall } from './transport.js';

/** A collective in flight. Thenable, so `await pg.allReduce(t)` waits for it. */
export class Work implements PromiseLike<void> {
  private finished = false;
  private readonly done: Promise<void>;

  /** `onWait(1)` when a caller begins to wait for it (await, wait()), `onWait(-1)` once it settles (Transport.awaiting) */
  constructor(done: Promise<void>, private readonly onWait?: (delta: 1 | -1) => void) {
    this.done = done.then(() => void (this.finished = true));
    this.done.catch(() => (this.finished = true)); // a caller that never waits must not crash the process; the group reports it next
  }
  /** resolves when the tensors hold the result; rejects naming the rank at fault */
  wait(): Promise<void> {
    this.waitBegins();
    return this.done;
  }
  isCompleted(): boolean {
    return this.finished;
  }
  then<A = void, B = never>(ok?: ((v: void) => A | PromiseLike<A>) | null, bad?: ((e: unknown) => B | PromiseLike<B>) | null): PromiseLike<A | B> {
    this.waitBegins();
    return this.done.then(ok, bad);
  }
  private waitBegins(): void {
    const hint = this.onWait;
    if (this.finished || !hint) return;
    hint(1);
    const ends = (): void => hint(-1);
    void this.done.then(ends, ends);
  }
}

export interface ProcessGroupOpts {
  /** every collective fails after this long without its peers (default 300 s) */
  timeoutMs: number;
  /** false: shared() returns ordinary tensors and peer() null, as on a transport without shared memory (default true) */
  share?: boolean;
}

export class ProcessGroup {
  private groupsCreated = 0;
  /**
   * Bytes each collective moved per rank so far, in the ZeRO paper's units: an allReduce of n
   * bytes counts 2n (a reduce-scatter and an all-gather), a reduceScatter its input, an allGather
   * its output, the others their buffer. Benchmarks read it to compare stages' communication.
   */
  readonly traffic: Record<Collective, number> = { allReduce: 0, broadcast: 0, allGather: 0, reduceScatter: 0, allToAll: 0, send: 0, recv: 0, barrier: 0 };

  constructor(private readonly transport: Transport, readonly opts: ProcessGroupOpts) {}

  /** this process's rank in the group */
  get rank(): number {
    return this.transport.rank;
  }
  get size(): number {
    return this.transport.ranks.length;
  }
  /** the group's global ranks; index = rank in the group */
  get ranks(): readonly number[] {
    return this.transport.ranks;
  }

  /**
   * A zeroed flat tensor every member can read in place: collectives whose buffers all lie in such
   * tensors skip the transport's copies (shared memory; elsewhere an ordinary tensor). Every member
   * calls it at the same point, with the same size; it waits for the calls in flight.
   * @example const bucket = group.shared(1 << 22); // ZeRO's gradient buckets and shards
   */
  shared(numel: number, dtype: DType = 'float32', tag: MemoryTag = currentTag('other')): Tensor {
    if (this.transport.share && this.opts.share !== false) return this.transport.share(dtype, numel, tag, this.opts.timeoutMs);
    return zeros([numel], { dtype, backend: 'cpu', tag });
  }

  /**
   * Rank `rank`'s (a global rank) copy of a tensor from shared(): the same elements of that rank's
   * part, readable here; null where the transport shares nothing or t is not from shared(). Reads
   * race with that rank's writes unless a barrier (or another collective) separates them.
   * @example await group.barrier(); const theirs = group.peer(shard, group.ranks[1]);
   */
  peer(t: Tensor, rank: number): Tensor | null {
    return this.opts.share === false ? null : (this.transport.peer?.(t, this.local(rank, 'peer')) ?? null);
  }

  /** Whether shared() gives memory every member reads in place (shared memory on, not disabled). */
  get sharesMemory(): boolean {
    return this.transport.share !== undefined && this.opts.share !== false;
  }

  /**
   * Every rank's shared() tensor t end to end, in rank order, as one tensor readable here: the
   * all-gather of t without a copy (t's bytes a multiple of 64, so the parts are contiguous); null
   * where nothing is shared. Reads race with the ranks' writes unless a barrier separates them.
   * @example await group.barrier(); const full = group.whole(shard); // ZeRO-3's layer, gathered in place
   */
  whole(t: Tensor): Tensor | null {
    return this.opts.share === false ? null : (this.transport.whole?.(t) ?? null);
  }

  /** ms this thread has spent blocked on collectives inside synchronous code: in the *Now starts and waitNow until the calls before were done (so until the peers had come to them), in blocking calls for the whole call */
  get blockedMs(): number {
    return this.blocked;
  }
  private blocked = 0;

  /** Collectives so far that read the peers' shared() buffers in place (0 where the transport has none). */
  get inPlaceCalls(): number {
    return this.transport.inPlaceCalls?.() ?? 0;
  }

  /**
   * Collectives so far that read some peer's private (ordinary) buffer directly with Linux's
   * cross-memory attach: one copy instead of two through the slots (0 where it is off: KESTREL_DIST_CMA=0).
   */
  get crossMemoryCalls(): number {
    return this.transport.crossMemoryCalls?.() ?? 0;
  }

  /**
   * Whether collectives on private tensors read the peers' buffers directly (cross-memory attach),
   * found at the group's first collective: null before it, false where it is off, denied (a seccomp
   * profile, Yama's ptrace_scope 2-3) or the transport has none (MPI).
   */
  get crossMemory(): boolean | null {
    return this.transport.crossMemory ? this.transport.crossMemory() : false;
  }

  /** In place: every rank's t becomes the reduction of all ranks' t (sum, avg, max or min). */
  allReduce(t: Tensor, op: ReduceOp = 'sum'): Work {
    this.reducible(t, op, 'allReduce');
    return this.call('allReduce', { src: t, dst: t, count: t.numel, reduce: op });
  }

  /** In place: every rank's t becomes rank `src`'s (a global rank). */
  broadcast(t: Tensor, src: number): Work {
    this.contiguous(t, 'broadcast', 'tensor');
    return this.call('broadcast', { src: t, dst: t, count: t.numel, peer: this.local(src, 'broadcast') });
  }

  /** output (size × input.numel elements) = every rank's input, in rank order (torch's all_gather_into_tensor). */
  allGather(output: Tensor, input: Tensor): Work {
    this.pair(output, input, this.size, 1, 'allGather');
    return this.call('allGather', { src: input, dst: output, count: input.numel });
  }

  /** output (input.numel / size elements) = block `rank` of the reduction of every rank's input (torch's reduce_scatter_tensor). */
  reduceScatter(output: Tensor, input: Tensor, op: ReduceOp = 'sum'): Work {
    this.pair(output, input, 1, this.size, 'reduceScatter');
    this.reducible(input, op, 'reduceScatter');
    return this.call('reduceScatter', { src: input, dst: output, count: output.numel, reduce: op });
  }

  /**
   * reduceScatter started before this returns, after blocking until the calls already started
   * are done (so their buffers may be freed): for grad-ready hooks, which run inside a
   * synchronous backward where no Promise settles. Transports without startNow queue it as usual.
   */
  reduceScatterNow(output: Tensor, input: Tensor, op: ReduceOp = 'sum'): Work {
    this.pair(output, input, 1, this.size, 'reduceScatter');
    this.reducible(input, op, 'reduceScatter');
    return this.call('reduceScatter', { src: input, dst: output, count: output.numel, reduce: op }, true);
  }

  /** allReduce (in place) started before this returns (see reduceScatterNow): data parallel's gradient buckets. */
  allReduceNow(t: Tensor, op: ReduceOp = 'sum'): Work {
    this.reducible(t, op, 'allReduce');
    return this.call('allReduce', { src: t, dst: t, count: t.numel, reduce: op }, true);
  }

  /** allGather started before this returns (see reduceScatterNow): ZeRO-3 prefetches the next layer's parameters inside a synchronous forward or backward. */
  allGatherNow(output: Tensor, input: Tensor): Work {
    this.pair(output, input, this.size, 1, 'allGather');
    return this.call('allGather', { src: input, dst: output, count: input.numel }, true);
  }

  /** Whether this group's transport can start calls and wait for them inside synchronous code (the *Now calls and waitNow). */
  get startsNow(): boolean {
    return this.transport.startNow !== undefined && this.transport.waitNow !== undefined;
  }

  /** Blocks until every call started on this group has finished (their buffers may then be read or freed). */
  waitNow(): void {
    if (!this.transport.waitNow) throw new Error('dist waitNow: this transport cannot wait inside synchronous code (the shared-memory and MPI transports can)');
    this.timeBlocked(() => this.transport.waitNow!());
  }

  /** Block r of output = block `rank` of rank r's input; both size × n elements (torch's all_to_all_single). */
  allToAll(output: Tensor, input: Tensor): Work {
    this.pair(output, input, 1, 1, 'allToAll');
    if (input.numel % this.size) throw new Error(`dist allToAll: ${input.numel} elements do not split into ${this.size} equal blocks`);
    return this.call('allToAll', { src: input, dst: output, count: input.numel / this.size });
  }

  /**
   * allToAll that blocks until done, for exchanges inside a synchronous forward or backward (expert
   * parallelism); every member calls it at the same point of its program.
   */
  allToAllSync(output: Tensor, input: Tensor): void {
    this.pair(output, input, 1, 1, 'allToAll');
    if (input.numel % this.size) throw new Error(`dist allToAll: ${input.numel} elements do not split into ${this.size} equal blocks`);
    this.callSync('allToAll', { src: input, dst: output, count: input.numel / this.size });
  }

  /** allReduce that blocks until done (see allToAllSync). */
  allReduceSync(t: Tensor, op: ReduceOp = 'sum'): void {
    this.reducible(t, op, 'allReduce');
    this.callSync('allReduce', { src: t, dst: t, count: t.numel, reduce: op });
  }

  /** Sends t to global rank dst; pairs with dst's recv (blocking until it took each piece). */
  send(t: Tensor, dst: number): Work {
    this.contiguous(t, 'send', 'tensor');
    return this.call('send', { src: t, count: t.numel, peer: this.local(dst, 'send') });
  }

  /** Receives into t from global rank src. */
  recv(t: Tensor, src: number): Work {
    this.contiguous(t, 'recv', 'tensor');
    return this.call('recv', { dst: t, count: t.numel, peer: this.local(src, 'recv') });
  }

  barrier(): Work {
    return this.call('barrier', {});
  }

  /** barrier started before this returns (see reduceScatterNow): ZeRO-3 orders its in-place reads of the peers' shards against their updates. */
  barrierNow(): Work {
    return this.call('barrier', {}, true);
  }

  /**
   * A group of some of these ranks (global ranks). Every rank of this group calls it, in the same
   * order as its other calls; members get the new group, the others null (torch's new_group).
   * @example const evens = await world.newGroup([0, 2]); if (evens) await evens.allReduce(t);
   */
  async newGroup(ranks: readonly number[]): Promise<ProcessGroup | null> {
    const sorted = [...new Set(ranks)].sort((a, b) => a - b);
    if (sorted.length === 0 || sorted.length !== ranks.length || sorted.some((r) => !this.ranks.includes(r)))
      throw new Error(`dist newGroup: ranks [${ranks.join(', ')}] must be distinct members of [${this.ranks.join(', ')}]`);
    const index = ++this.groupsCreated;
    const member = sorted.includes(this.ranks[this.rank]);
    const sub = member ? this.transport.subgroup(index, sorted) : null;
    await this.barrier(); // every member has mapped the subgroup's segment
    sub?.settled();
    return sub ? new ProcessGroup(sub.transport, this.opts) : null;
  }

  /** Releases the transport (after the calls in flight). */
  destroy(): void {
    this.transport.close();
  }

  private call(op: Collective, c: Partial<TransportCall>, now = false): Work {
    const dtype: DType = (c.src ?? c.dst)?.dtype ?? 'uint8';
    const call: TransportCall = { op, reduce: 'sum', peer: 0, count: 0, src: null, dst: null, dtype, timeoutMs: this.opts.timeoutMs, ...c };
    const bytes = (t: Tensor | null | undefined): number => (t ? t.numel * dtypeBytes(t.dtype) : 0);
    this.traffic[op] += op === 'allReduce' ? 2 * bytes(c.src) : op === 'allGather' ? bytes(c.dst) : bytes(c.src ?? c.dst);
    const done = now && this.transport.startNow ? this.timeBlocked(() => this.transport.startNow!(call)) : this.transport.run(call);
    return new Work(done, this.transport.awaiting && ((d) => this.transport.awaiting!(d)));
  }

  private timeBlocked<T>(fn: () => T): T {
    const t0 = performance.now();
    try {
      return fn();
    } finally {
      this.blocked += performance.now() - t0;
    }
  }

  private callSync(op: Collective, c: Partial<TransportCall>): void {
    if (!this.transport.runSync) throw new Error(`dist ${op}: this transport cannot run a blocking call`);
    const dtype: DType = (c.src ?? c.dst)?.dtype ?? 'uint8';
    this.timeBlocked(() => this.transport.runSync!({ op, reduce: 'sum', peer: 0, count: 0, src: null, dst: null, dtype, timeoutMs: this.opts.timeoutMs, ...c }));
  }

  private local(global: number, op: string): number {
    const i = this.ranks.indexOf(global);
    if (i < 0) throw new Error(`dist ${op}: rank ${global} is not in this group [${this.ranks.join(', ')}]`);
    return i;
  }

  private contiguous(t: Tensor, op: string, what: string): void {
    if (!t.isContiguous()) throw new Error(`dist ${op}: the ${what} [${t.shape.join(', ')}] is not contiguous (call .contiguous() first)`);
  }

  private reducible(t: Tensor, op: ReduceOp, name: string): void {
    this.contiguous(t, name, 'tensor');
    if (op === 'avg' && !isFloat(t.dtype)) throw new Error(`dist ${name}: 'avg' needs a floating dtype, got ${t.dtype} (use 'sum' and divide)`);
  }

  // output.numel × outFactor must equal input.numel × inFactor, same dtype, both contiguous
  private pair(output: Tensor, input: Tensor, outPerIn: number, inPerOut: number, op: string): void {
    this.contiguous(output, op, 'output');
    this.contiguous(input, op, 'input');
    if (output.dtype !== input.dtype) throw new Error(`dist ${op}: output is ${output.dtype}, input ${input.dtype}`);
    if (output.numel * inPerOut !== input.numel * outPerIn)
      throw new Error(`dist ${op}: output [${output.shape.join(', ')}] must hold ${(input.numel * outPerIn) / inPerOut} elements for input [${input.shape.join(', ')}] in a group of ${this.size}`);
  }
}
