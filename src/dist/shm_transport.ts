// The embedded transport: collectives over a POSIX shared-memory segment between the rank
// processes of one machine (native/dist_shm.cc). One call is in flight per process, in program
// order (queued_transport.ts); the native side runs it on a worker thread, so JS keeps computing
// meanwhile (async handles). A failed call breaks the group: later calls reject with the first error.
import { type NativeAddon } from '../backend/addon.js';
import { adoptCpuStorage, cpuStorageHandle } from '../backend/cpu/backend.js';
import { type DType, dtypeBytes } from '../tensor/dtype.js';
import { Layout } from '../tensor/layout.js';
import type { MemoryTag } from '../tensor/memory.js';
import type { Storage } from '../tensor/storage.js';
import { Tensor } from '../tensor/tensor.js';
import { type NativeCall, QueuedTransport, dtypeCode } from './queued_transport.js';
import { COLLECTIVES, type Collective, type Transport, type TransportCall } from './transport.js';

/** 16 MiB pieces: big enough to amortize the two phase meetings, small enough that pages stay warm */
export const DEFAULT_SLOT_BYTES = 16 << 20;

export class ShmTransport extends QueuedTransport {
  private readonly id: number;
  /** the storages share() made (peer() serves only these) */
  private readonly shared = new WeakSet<Storage>();

  constructor(
    private readonly addon: NativeAddon,
    /** the segment's name in /dev/shm ('/kestrel-...') */
    readonly name: string,
    rank: number,
    ranks: readonly number[],
    private readonly slotBytes: number = DEFAULT_SLOT_BYTES,
  ) {
    super(rank, ranks, 'shared-memory');
    this.id = addon.distOpen(name, rank, [...ranks], slotBytes);
  }

  protected runNative(call: TransportCall, c: NativeCall): Promise<void> {
    return this.addon.distRun(this.id, ...c.codes, call.peer, call.count, this.ranks.length, ...c.src, ...c.dst, call.timeoutMs, `${call.op} (rank ${this.ranks[this.rank]})`);
  }

  startNow(call: TransportCall): Promise<void> {
    return this.startAfterIdle(call, () => this.addon.distWaitIdle(this.id));
  }

  waitNow(): void {
    this.waitAfterIdle(() => this.addon.distWaitIdle(this.id));
  }

  runSync(call: TransportCall): void {
    this.runBlocking(call, (c) => this.addon.distRunSync(this.id, ...c.codes, call.peer, call.count, this.ranks.length, ...c.src, ...c.dst, call.timeoutMs, `${call.op} (rank ${this.ranks[this.rank]})`));
  }

  share(dtype: DType, numel: number, tag: MemoryTag, timeoutMs: number): Tensor {
    if (!(Number.isSafeInteger(numel) && numel > 0)) throw new Error(`dist share: ${numel} elements (a positive integer)`);
    this.waitNow();
    const handle = this.addon.distShare(this.id, numel * dtypeBytes(dtype), timeoutMs);
    const storage = adoptCpuStorage(this.addon, handle, dtype, numel, tag);
    this.shared.add(storage);
    return new Tensor(storage, new Layout([numel]));
  }

  peer(t: Tensor, rank: number): Tensor | null {
    if (rank === this.rank && this.shared.has(t.storage)) return new Tensor(t.storage.retain(), t.layout);
    // the peer's memory, counted in its own memory stats
    return this.borrow(t, (h) => this.addon.distPeer(this.id, h, rank), t.storage.numel, t.layout);
  }

  whole(t: Tensor): Tensor | null {
    const numel = t.storage.numel * this.ranks.length;
    // this member's part is counted by t's storage, the peers' by their own
    return this.borrow(t, (h) => this.addon.distWhole(this.id, h), numel, new Layout([numel]));
  }

  /** A borrowed (uncounted) storage the addon makes over shared memory that t's share() storage locates; null for any other t. */
  private borrow(t: Tensor, make: (handle: number) => number, numel: number, layout: Layout): Tensor | null {
    const handle = cpuStorageHandle(t.storage);
    if (handle === null || !this.shared.has(t.storage)) return null;
    return new Tensor(adoptCpuStorage(this.addon, make(handle), t.dtype, numel, t.storage.tag, true), layout);
  }

  awaiting(delta: 1 | -1): void {
    this.addon.distWaiting(this.id, delta);
  }

  crossMemory(): boolean | null {
    const state = this.addon.distCmaState(this.id);
    return state < 0 ? null : state === 1;
  }

  crossMemoryCalls(): number {
    return this.addon.distCmaCalls(this.id);
  }

  inPlaceCalls(): number {
    return this.addon.distSharedCalls(this.id);
  }

  pieceElements(op: Collective, dtype: DType): number {
    return this.addon.distPieceElements(this.id, COLLECTIVES.indexOf(op), dtypeCode(dtype, op));
  }

  subgroup(index: number, ranks: readonly number[]): { transport: Transport; settled: () => void } {
    const me = ranks.indexOf(this.ranks[this.rank]);
    const name = `${this.name}-g${index}`;
    const transport = new ShmTransport(this.addon, name, me, ranks, this.slotBytes);
    // once every member has mapped it, the name can go: the mappings outlive it, and nothing is left in /dev/shm
    return { transport, settled: () => void (me === 0 && this.addon.distUnlink(name)) };
  }

  // unmap only after the last call finished with the slots
  protected release(): void {
    this.addon.distClose(this.id);
  }
}
