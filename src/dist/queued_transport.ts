// What the native transports (shared memory, MPI) share: one call in flight per group, in program
// order (every member issues the same calls in the same order), each call's tensors kept alive
// until the native side is done with them, and a group broken by its first failure (later calls
// reject with that error). Subclasses say how one call reaches their native side.
import { cpuStorageHandle } from '../backend/cpu/backend.js';
import { dtypeBytes, type DType } from '../tensor/dtype.js';
import type { Tensor } from '../tensor/tensor.js';
import { COLLECTIVES, type Collective, DIST_DTYPES, REDUCE_OPS, type Transport, type TransportCall } from './transport.js';

/** A call as the addon takes it: op, reduce and dtype codes, and (storage handle, byte offset) per buffer. */
export interface NativeCall {
  codes: [op: number, reduce: number, dtype: number];
  src: [handle: number, byteOffset: number];
  dst: [handle: number, byteOffset: number];
}

function bufferOf(t: Tensor | null, what: string, op: Collective, transport: string): [handle: number, byteOffset: number] {
  if (t === null) return [-1, 0];
  const handle = cpuStorageHandle(t.storage);
  if (handle === null) throw new Error(`dist ${op}: the ${what} tensor is on backend '${t.backendName}'; the ${transport} transport needs 'cpu' tensors`);
  return [handle, t.layout.offset * dtypeBytes(t.dtype)];
}

export function dtypeCode(dtype: DType, op: Collective): number {
  const i = DIST_DTYPES.indexOf(dtype);
  if (i < 0) throw new Error(`dist ${op}: dtype ${dtype} is not carried (one of ${DIST_DTYPES.join(', ')})`);
  return i;
}

export abstract class QueuedTransport implements Transport {
  private tail: Promise<void> = Promise.resolve();
  private broken: Error | null = null;
  protected closed = false;
  /** calls chained behind earlier ones whose native start has not come yet */
  private waiting = 0;
  /** calls queued or running (a blocking call must not overtake them) */
  private inFlight = 0;
  /** releases of the buffers of calls started natively and not yet known to be done */
  private readonly holding = new Set<() => void>();

  constructor(readonly rank: number, readonly ranks: readonly number[], /** for messages: 'shared-memory', 'MPI' */ private readonly kind: string) {}

  /** runs one call on the native side */
  protected abstract runNative(call: TransportCall, c: NativeCall): Promise<void>;
  abstract pieceElements(op: Collective, dtype: DType): number;
  abstract subgroup(index: number, ranks: readonly number[]): { transport: Transport; settled: () => void };
  /** frees the native side, after the last call */
  protected abstract release(): void;

  run(call: TransportCall): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`dist ${call.op}: the process group was destroyed`));
    const start = this.prepare(call);
    this.waiting++;
    return this.enqueue(() => (this.waiting--, start()));
  }

  /** Runs `work` after every earlier call (and before every later one). */
  protected enqueue<T>(work: () => Promise<T>): Promise<T> {
    const done = this.counted(this.tail.then(work, work));
    this.tail = done.then(() => undefined, () => undefined);
    return done;
  }

  private counted<T>(done: Promise<T>): Promise<T> {
    this.inFlight++;
    return done.finally(() => void this.inFlight--);
  }

  /**
   * startNow for a native side that can wait for its worker to go idle: blocks until the calls
   * already started have finished (releasing their buffers), then starts this one before
   * returning, so code that cannot await (a grad-ready hook inside backward) keeps one call in
   * flight and knows when its buffer is free.
   */
  protected startAfterIdle(call: TransportCall, waitIdle: () => void): Promise<void> {
    if (this.closed) throw new Error(`dist ${call.op}: the process group was destroyed`);
    if (this.waiting) throw new Error(`dist ${call.op}: cannot start now behind ${this.waiting} call(s) still waiting for their turn (await them first)`);
    const start = this.prepare(call);
    waitIdle();
    for (const release of this.holding) release();
    const done = this.counted(start());
    this.tail = done.then(() => undefined, () => undefined);
    return done;
  }

  /** waitNow for a native side that can wait for its worker to go idle (see startAfterIdle). */
  protected waitAfterIdle(waitIdle: () => void): void {
    if (this.waiting) throw new Error(`dist: cannot wait now behind ${this.waiting} call(s) still waiting for their turn (await them first)`);
    waitIdle();
    for (const release of this.holding) release();
  }

  /** runSync for a native side that can block: the call runs now, on this thread, if no other is in flight. */
  protected runBlocking(call: TransportCall, run: (c: NativeCall) => void): void {
    const { op } = call;
    if (this.closed) throw new Error(`dist ${op}: the process group was destroyed`);
    if (this.broken) throw new Error(`dist ${op}: the process group is broken by an earlier failure: ${this.broken.message}`);
    if (this.inFlight > 0) throw new Error(`dist ${op}: a blocking call cannot overtake the ${this.inFlight} asynchronous call(s) in flight on this group (await them first)`);
    try {
      run(this.nativeCall(call));
    } catch (e) {
      this.broken ??= e as Error;
      throw e;
    }
  }

  private nativeCall(call: TransportCall): NativeCall {
    const { op } = call;
    return {
      codes: [COLLECTIVES.indexOf(op), REDUCE_OPS.indexOf(call.reduce), dtypeCode(call.dtype, op)],
      src: bufferOf(call.src, 'input', op, this.kind),
      dst: bufferOf(call.dst, 'output', op, this.kind),
    };
  }

  /** Checks the call's buffers now and returns what starts it natively (holding the buffers until it is done). */
  private prepare(call: TransportCall): () => Promise<void> {
    const c = this.nativeCall(call);
    // keep the buffers alive until the native call is done with them (startAfterIdle may learn that first)
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
        if (this.broken) throw new Error(`dist ${call.op}: the process group is broken by an earlier failure: ${this.broken.message}`);
        this.holding.add(release);
        await this.runNative(call, c);
      } catch (e) {
        this.broken ??= e as Error;
        throw e;
      } finally {
        release();
      }
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    void this.tail.then(() => this.release());
  }
}
