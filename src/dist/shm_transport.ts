// The embedded transport: collectives over a POSIX shared-memory segment between the rank
// processes of one machine (native/dist_shm.cc). One call is in flight per process, in program
// order; the native side runs it on a worker thread, so JS keeps computing meanwhile (async
// handles). A failed call breaks the group: later calls reject with the first error.
import { type NativeAddon } from '../backend/addon.js';
import { cpuStorageHandle } from '../backend/cpu/backend.js';
import { dtypeBytes, type DType } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { COLLECTIVES, type Collective, DIST_DTYPES, REDUCE_OPS, type Transport, type TransportCall } from './transport.js';

/** 16 MiB pieces: big enough to amortize the two phase meetings, small enough that pages stay warm */
export const DEFAULT_SLOT_BYTES = 16 << 20;

function bufferOf(t: Tensor | null, what: string, op: Collective): [handle: number, byteOffset: number] {
  if (t === null) return [-1, 0];
  const handle = cpuStorageHandle(t.storage);
  if (handle === null) throw new Error(`dist ${op}: the ${what} tensor is on backend '${t.backendName}'; the shared-memory transport needs 'cpu' tensors`);
  return [handle, t.layout.offset * dtypeBytes(t.dtype)];
}

function dtypeCode(dtype: DType, op: Collective): number {
  const i = DIST_DTYPES.indexOf(dtype);
  if (i < 0) throw new Error(`dist ${op}: dtype ${dtype} is not carried (one of ${DIST_DTYPES.join(', ')})`);
  return i;
}

export class ShmTransport implements Transport {
  private readonly id: number;
  private tail: Promise<void> = Promise.resolve();
  private broken: Error | null = null;
  /** calls chained behind earlier ones whose native start has not come yet */
  private waiting = 0;
  /** asynchronous calls queued or running (a blocking call must not overtake them) */
  private inFlight = 0;
  /** releases of the buffers of calls started natively and not yet known to be done */
  private readonly holding = new Set<() => void>();
  private closed = false;

  constructor(
    private readonly addon: NativeAddon,
    /** the segment's name in /dev/shm ('/kestrel-...') */
    readonly name: string,
    readonly rank: number,
    readonly ranks: readonly number[],
    private readonly slotBytes: number = DEFAULT_SLOT_BYTES,
  ) {
    this.id = addon.distOpen(name, rank, [...ranks], slotBytes);
  }

  run(call: TransportCall): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`dist ${call.op}: the process group was destroyed`));
    const native = this.prepare(call);
    this.waiting++;
    const start = (): Promise<void> => (this.waiting--, native());
    const done = this.counted(this.tail.then(start, start));
    this.tail = done.catch(() => undefined);
    return done;
  }

  /** `done`, counted in flight until it settles. */
  private counted(done: Promise<void>): Promise<void> {
    this.inFlight++;
    return done.finally(() => void this.inFlight--);
  }

  runSync(call: TransportCall): void {
    const { op } = call;
    if (this.closed) throw new Error(`dist ${op}: the process group was destroyed`);
    if (this.broken) throw new Error(`dist ${op}: the process group is broken by an earlier failure: ${this.broken.message}`);
    if (this.inFlight > 0) throw new Error(`dist ${op}: a blocking call cannot overtake the ${this.inFlight} asynchronous call(s) in flight on this group (await them first)`);
    const a = this.nativeArgs(call);
    try {
      this.addon.distRunSync(this.id, a.codes[0], a.codes[1], a.codes[2], call.peer, call.count, this.ranks.length,
        a.src[0], a.src[1], a.dst[0], a.dst[1], call.timeoutMs, `${op} (rank ${this.ranks[this.rank]})`);
    } catch (e) {
      this.broken ??= e as Error;
      throw e;
    }
  }

  /**
   * Blocks until the calls already started have finished on their worker (releasing their
   * buffers), then starts this one on its worker before returning: code that cannot await (a
   * grad-ready hook inside backward) keeps one call in flight and knows when its buffer is free.
   */
  startNow(call: TransportCall): Promise<void> {
    if (this.closed) throw new Error(`dist ${call.op}: the process group was destroyed`);
    if (this.waiting) throw new Error(`dist ${call.op}: cannot start now behind ${this.waiting} call(s) still waiting for their turn (await them first)`);
    const native = this.prepare(call);
    this.addon.distWaitIdle(this.id);
    for (const release of this.holding) release();
    const done = this.counted(native());
    this.tail = done.catch(() => undefined);
    return done;
  }

  /** The call's buffers and codes, checked. */
  private nativeArgs(call: TransportCall): { src: [number, number]; dst: [number, number]; codes: [number, number, number] } {
    const { op } = call;
    return {
      src: bufferOf(call.src, 'input', op), dst: bufferOf(call.dst, 'output', op),
      codes: [COLLECTIVES.indexOf(op), REDUCE_OPS.indexOf(call.reduce), dtypeCode(call.dtype, op)],
    };
  }

  /** Checks the call's buffers now and returns what starts it natively (holding the buffers until it is done). */
  private prepare(call: TransportCall): () => Promise<void> {
    const { op } = call;
    const { src, dst, codes } = this.nativeArgs(call);
    // keep the buffers alive until the native call is done with them (startNow may learn that first)
    const held = [call.src, call.dst].filter((t): t is Tensor => t !== null).map((t) => t.storage.retain());
    let holding = true;
    const release = (): void => {
      if (!holding) return;
      holding = false;
      held.forEach((s) => s.release());
      this.holding.delete(release);
    };
    return async (): Promise<void> => {
      try {
        if (this.broken) throw new Error(`dist ${op}: the process group is broken by an earlier failure: ${this.broken.message}`);
        this.holding.add(release);
        await this.addon.distRun(this.id, codes[0], codes[1], codes[2], call.peer, call.count, this.ranks.length,
          src[0], src[1], dst[0], dst[1], call.timeoutMs, `${op} (rank ${this.ranks[this.rank]})`);
      } catch (e) {
        this.broken ??= e as Error;
        throw e;
      } finally {
        release();
      }
    };
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

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // unmap only after the last call finished with the slots
    void this.tail.then(() => this.addon.distClose(this.id));
  }
}
