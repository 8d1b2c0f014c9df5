// The MPI transport: the Transport contract over MPI's non-blocking collectives (native/dist_mpi.cc,
// MPI reached through kestrel_mpi.so, see mpi_library.ts), for jobs started by mpirun or srun,
// across machines. Calls are queued like the shared-memory transport's and run on a libuv worker
// thread that polls MPI_Test, so JS keeps computing meanwhile. At exit the process finalizes MPI;
// after a failure it exits without (mpirun stops the job on the non-zero code), and a process that
// caught a broken group's error MPI_Abort's the job, so that no rank waits for a dead one.
import { writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { type NativeAddon } from '../backend/addon.js';
import type { DType } from '../tensor/dtype.js';
import { type MpiImplementation, detectMpi, mpiLibrary } from './mpi_library.js';
import { type NativeCall, QueuedTransport, dtypeCode } from './queued_transport.js';
import { COLLECTIVES, type Collective, type Transport, type TransportCall } from './transport.js';

let finishing = false;

/** Finalizes MPI (or aborts the job after a failure) when the process exits; installed once. */
function finishAtExit(addon: NativeAddon): void {
  if (finishing) return;
  finishing = true;
  process.on('exit', (code) => {
    // the launcher learns which rank failed first from this line, whatever mpirun reports after
    if (code !== 0 && process.env.KESTREL_MPI_LAUNCHER === '1') writeSync(2, `kestrel-dist: this rank exits with code ${code}\n`);
    addon.mpiFinish(code);
  });
}

/**
 * Under `kestrel launch` through mpirun (KESTREL_MPI_LAUNCHER=1), a rank says which pid it is:
 * MPICH's mpirun names a dead rank by pid and host only, and the launcher maps them back.
 */
export const PID_LINE = /^kestrel-dist: rank (\d+) is pid (\d+) on (\S+)$/;
/** What a failing rank says last under that launcher (the launcher blames the first to say it). */
export const EXIT_LINE = /^kestrel-dist: this rank exits with code (\d+)$/;

function announcePid(rank: number): void {
  if (process.env.KESTREL_MPI_LAUNCHER === '1') process.stderr.write(`kestrel-dist: rank ${rank} is pid ${process.pid} on ${hostname()}\n`);
}

export class MpiTransport extends QueuedTransport {
  private constructor(
    private readonly addon: NativeAddon,
    /** the native group's id, once every member has created it */
    private readonly id: Promise<number>,
    rank: number,
    ranks: readonly number[],
    /** settled ids, for pieceElements (which is synchronous) */
    private known: number | null,
  ) {
    super(rank, ranks, 'MPI');
    void id.then((v) => (this.known = v), () => undefined);
  }

  /**
   * MPI_Init and the world group: every rank of the mpirun/srun job calls it.
   * @example const t = await MpiTransport.world(addon, { slotBytes: 16 << 20, timeoutMs: 300_000 });
   */
  static async world(addon: NativeAddon, o: { slotBytes: number; timeoutMs: number; implementation?: MpiImplementation }): Promise<{ transport: MpiTransport; version: string }> {
    const impl = o.implementation ?? detectMpi();
    if (!impl) throw new Error('dist: the MPI backend was asked for but no MPI was found (no mpirun on PATH; set KESTREL_MPI=openmpi|mpich)');
    // UCX (the transport under Debian's MPICH) hooks malloc, mmap, munmap and brk when MPI starts,
    // to keep its registration cache for RDMA memory. Under Node those hooks corrupted glibc's heap
    // now and then (a rank died with SIGSEGV in realloc or inside V8, about 1 run in 13 of the
    // 4-rank collective suite; openucx/ucx#3831 is the same crash under MPICH). Turning the malloc
    // hooks off alone was not enough: turn UCX's memory events off (no hooks at all) unless the user
    // chose otherwise. Ranks on one machine move data through shared memory, which needs no cache.
    process.env.UCX_MEM_EVENTS ??= 'no';
    process.env.UCX_MEM_MALLOC_HOOKS ??= 'no';
    const version = addon.mpiLoad(mpiLibrary(impl));
    finishAtExit(addon);
    const id = await addon.mpiInit(o.slotBytes, o.timeoutMs);
    const [rank, size, ...ranks] = addon.mpiGroupInfo(id);
    announcePid(rank);
    if (ranks.length !== size) throw new Error(`dist: MPI group info of ${ranks.length} ranks for a group of ${size}`);
    return { transport: new MpiTransport(addon, Promise.resolve(id), rank, ranks, id), version: version.trim() };
  }

  protected async runNative(call: TransportCall, c: NativeCall): Promise<void> {
    // a settled id starts the call at once: startNow's caller (inside a synchronous pass) must see it started
    const id = this.known ?? (await this.id);
    return this.addon.mpiRun(id, ...c.codes, call.peer, call.count, this.ranks.length, ...c.src, ...c.dst, call.timeoutMs, `${call.op} (rank ${this.ranks[this.rank]})`);
  }

  /** The group's id for calls made inside synchronous code, where the Promise cannot be awaited. */
  private settledId(op: string): number {
    if (this.known === null) throw new Error(`dist ${op}: the MPI group is still being created (await a call on it first)`);
    return this.known;
  }

  startNow(call: TransportCall): Promise<void> {
    const id = this.settledId(call.op);
    return this.startAfterIdle(call, () => this.addon.mpiWaitIdle(id));
  }

  waitNow(): void {
    const id = this.settledId('waitNow');
    this.waitAfterIdle(() => this.addon.mpiWaitIdle(id));
  }

  runSync(call: TransportCall): void {
    const id = this.settledId(call.op);
    this.runBlocking(call, (c) => this.addon.mpiRunSync(id, ...c.codes, call.peer, call.count, this.ranks.length, ...c.src, ...c.dst, call.timeoutMs, `${call.op} (rank ${this.ranks[this.rank]})`));
  }

  pieceElements(op: Collective, dtype: DType): number {
    return this.addon.mpiPieceElements(this.settledId('pieceElements'), COLLECTIVES.indexOf(op), dtypeCode(dtype, op));
  }

  /** MPI_Comm_create_group by the members, queued after this group's earlier calls. */
  subgroup(_index: number, ranks: readonly number[]): { transport: Transport; settled: () => void } {
    const members = ranks.map((g) => this.ranks.indexOf(g));
    if (members.some((m) => m < 0)) throw new Error(`dist newGroup: ranks [${ranks.join(', ')}] are not all in this group [${this.ranks.join(', ')}]`);
    const id = this.enqueue(async () => this.addon.mpiGroup(await this.id, members));
    const me = ranks.indexOf(this.ranks[this.rank]);
    return { transport: new MpiTransport(this.addon, id, me, ranks, null), settled: () => undefined };
  }

  protected release(): void {
    void this.id.then((id) => this.addon.mpiFree(id), () => undefined);
  }
}
