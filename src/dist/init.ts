// init_process_group for Kestrel: reads this process's rank from the environment (env.ts), meets
// the other ranks through the TCP rendezvous and returns the world ProcessGroup on the
// shared-memory transport. KESTREL_DIST_TIMEOUT_MS and KESTREL_DIST_SLOT_BYTES tune it.
import { loadNative, nativeLoadError } from '../backend/addon.js';
import { type RankEnv, rankFromEnv } from './env.js';
import { ProcessGroup } from './process_group.js';
import { rendezvous } from './rendezvous.js';
import { DEFAULT_SLOT_BYTES, ShmTransport } from './shm_transport.js';

export const DEFAULT_TIMEOUT_MS = 300_000;

export interface InitOpts {
  /** a collective, or the start-up, fails after this long without its peers */
  timeoutMs?: number;
  /** bytes of one piece (per rank slot) of the shared-memory transport; a multiple of 4096 */
  slotBytes?: number;
  env?: Record<string, string | undefined>;
}

function positive(env: Record<string, string | undefined>, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  const v = Number(raw);
  if (!(v > 0) || !Number.isInteger(v)) throw new Error(`environment: ${name}='${raw}' is not a positive integer`);
  return v;
}

/** The segment name rank 0 hands out: the launcher's prefix (which it cleans up after a crash) or one of rank 0's own. */
export function segmentName(rank: RankEnv, env: Record<string, string | undefined>): string {
  const prefix = env.KESTREL_DIST_SHM_PREFIX || `/kestrel-${process.pid}`;
  return `${prefix}-${rank.masterPort}`;
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
  if (me.localWorldSize !== me.worldSize)
    throw new Error(`dist: ${me.worldSize} ranks over several machines (${me.localWorldSize} here, from ${me.source}); the shared-memory transport needs them all on one machine and the MPI transport is not available yet`);
  const addon = loadNative();
  if (!addon) throw new Error(`dist: the shared-memory transport needs the native addon: ${nativeLoadError()}`);
  const timeoutMs = opts.timeoutMs ?? positive(env, 'KESTREL_DIST_TIMEOUT_MS') ?? DEFAULT_TIMEOUT_MS;
  const slotBytes = opts.slotBytes ?? positive(env, 'KESTREL_DIST_SLOT_BYTES') ?? DEFAULT_SLOT_BYTES;
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
  return new ProcessGroup(transport, { timeoutMs });
}
