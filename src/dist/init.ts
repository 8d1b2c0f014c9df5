// init_process_group for Kestrel: reads this process's rank from the environment (env.ts) and
// returns the world ProcessGroup on a transport: shared memory (the ranks meet through the TCP
// rendezvous) for `kestrel launch` and torchrun-style jobs, MPI for jobs started by mpirun or srun
// or with KESTREL_DIST_BACKEND=mpi. KESTREL_DIST_TIMEOUT_MS and KESTREL_DIST_SLOT_BYTES tune both.
import { randomBytes } from 'node:crypto';
import { loadNative, nativeLoadError } from '../backend/addon.js';
import { type RankEnv, rankFromEnv } from './env.js';
import { ProcessGroup } from './process_group.js';
import { MpiTransport } from './mpi_transport.js';
import { rendezvous } from './rendezvous.js';
import { DEFAULT_SLOT_BYTES, ShmTransport } from './shm_transport.js';

export const DEFAULT_TIMEOUT_MS = 300_000;

export const DIST_BACKENDS = ['shm', 'mpi'] as const;
export type DistBackend = (typeof DIST_BACKENDS)[number];

export interface InitOpts {
  /** a collective, or the start-up, fails after this long without its peers */
  timeoutMs?: number;
  /** bytes of one piece (per rank slot) of the shared-memory transport; a multiple of 4096 */
  slotBytes?: number;
  /** default: KESTREL_DIST_BACKEND, else 'mpi' under mpirun/srun and 'shm' otherwise */
  backend?: DistBackend;
  /** ProcessGroup.shared regions where the transport has them (default: true; KESTREL_DIST_SHARE=0 turns them off, for an A/B) */
  share?: boolean;
  env?: Record<string, string | undefined>;
}

/**
 * The transport a job uses: the one asked for (KESTREL_DIST_BACKEND), else MPI when an MPI
 * launcher or Slurm started the ranks, else shared memory.
 * @example distBackend(rankFromEnv({ OMPI_COMM_WORLD_RANK: '0', OMPI_COMM_WORLD_SIZE: '2' }), {}) // 'mpi'
 */
export function distBackend(me: RankEnv, env: Record<string, string | undefined>): DistBackend {
  const asked = env.KESTREL_DIST_BACKEND;
  if (asked) {
    if (!DIST_BACKENDS.includes(asked as DistBackend)) throw new Error(`environment: KESTREL_DIST_BACKEND='${asked}' must be one of ${DIST_BACKENDS.join(', ')}`);
    return asked as DistBackend;
  }
  return me.source === 'openmpi' || me.source === 'mpich' || me.source === 'slurm' ? 'mpi' : 'shm';
}

function positive(env: Record<string, string | undefined>, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  const v = Number(raw);
  if (!(v > 0) || !Number.isInteger(v)) throw new Error(`environment: ${name}='${raw}' is not a positive integer`);
  return v;
}

/**
 * The segment name rank 0 hands out: the launcher's prefix (which it cleans up after a crash) or one
 * of rank 0's own, then a random part. Every member opens the segment with O_CREAT and keeps what it
 * holds, so a segment left by an earlier job that died under the same pid and port would be opened
 * with that job's counters, and phases would pass without their peers.
 */
export function segmentName(rank: RankEnv, env: Record<string, string | undefined>): string {
  const prefix = env.KESTREL_DIST_SHM_PREFIX || `/kestrel-${process.pid}`;
  return `${prefix}-${rank.masterPort}-${randomBytes(6).toString('hex')}`;
}

/**
 * A rank started by `kestrel launch` exits when the launcher is gone (killed with SIGKILL, it
 * could not stop its ranks), so that no rank outlives its job.
 */
function exitWithLauncher(env: Record<string, string | undefined>): void {
  const launcher = Number(env.KESTREL_LAUNCHER_PID);
  if (!(launcher > 0) || process.ppid !== launcher) return;
  setInterval(() => {
    if (process.ppid === launcher) return;
    process.stderr.write(`dist: the launcher (pid ${launcher}) is gone; this rank exits\n`);
    process.exit(1);
  }, 1000).unref();
}

/**
 * Joins the job this process is a rank of.
 * @example const world = await initProcessGroup(); await world.allReduce(grad, 'avg');
 */
export async function initProcessGroup(opts: InitOpts = {}): Promise<ProcessGroup> {
  const env = opts.env ?? process.env;
  const me = rankFromEnv(env);
  const backend = opts.backend ?? distBackend(me, env);
  const timeoutMs = opts.timeoutMs ?? positive(env, 'KESTREL_DIST_TIMEOUT_MS') ?? DEFAULT_TIMEOUT_MS;
  const slotBytes = opts.slotBytes ?? positive(env, 'KESTREL_DIST_SLOT_BYTES') ?? DEFAULT_SLOT_BYTES;
  const share = opts.share ?? env.KESTREL_DIST_SHARE !== '0';
  const addon = loadNative();
  if (!addon) throw new Error(`dist: the ${backend === 'mpi' ? 'MPI' : 'shared-memory'} transport needs the native addon: ${nativeLoadError()}`);
  if (backend === 'mpi') {
    const { transport } = await MpiTransport.world(addon, { slotBytes, timeoutMs });
    if (me.source !== 'single' && (transport.rank !== me.rank || transport.ranks.length !== me.worldSize))
      throw new Error(`dist: MPI says this is rank ${transport.rank} of ${transport.ranks.length}, the environment (${me.source}) rank ${me.rank} of ${me.worldSize}: start the ranks with mpirun or srun for the MPI backend`);
    return new ProcessGroup(transport, { timeoutMs, share });
  }
  if (me.localWorldSize !== me.worldSize)
    throw new Error(`dist: ${me.worldSize} ranks over several machines (${me.localWorldSize} here, from ${me.source}); the shared-memory transport needs them all on one machine: start the job with mpirun (or kestrel launch --hostfile) for the MPI transport`);
  exitWithLauncher(env);
  const ranks = Array.from({ length: me.worldSize }, (_, i) => i);
  let transport: ShmTransport | null = null;
  await rendezvous({
    rank: me.rank, worldSize: me.worldSize, addr: me.masterAddr, port: me.masterPort, timeoutMs,
    segment: segmentName(me, env),
    open: (name) => void (transport = new ShmTransport(addon, name, me.rank, ranks, slotBytes)),
    unlink: (name) => void addon.distUnlink(name),
  });
  if (!transport) throw new Error('dist: the rendezvous finished without a segment');
  return new ProcessGroup(transport, { timeoutMs, share });
}
