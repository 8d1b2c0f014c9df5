// `kestrel launch -n N [--master-port P] -- <command>`: runs a command as N ranks on this machine
// (src/dist/launch.ts, shared-memory transport); with `--hostfile FILE` (DeepSpeed's `host slots=N`)
// or `--backend mpi` it starts them through mpirun instead (src/dist/mpirun.ts), across machines.
// `kestrel ...` after `--` runs this same kestrel. Exits with the failing rank's code after naming
// it, or 130 after Ctrl-C stopped every rank. `--elastic` restarts a training job on the ranks
// left when one dies (src/dist/elastic.ts), on this machine or through mpirun.
import { readFileSync } from 'node:fs';
import { parseHostfile, readHostfile } from '../dist/hostfile.js';
import { launchElastic } from '../dist/elastic.js';
import { DIST_BACKENDS } from '../dist/init.js';
import { type LaunchResult, failureMessage, launch } from '../dist/launch.js';
import { MPI_IMPLEMENTATIONS, detectMpi } from '../dist/mpi_library.js';
import { launchMpi } from '../dist/mpirun.js';
import { numberFlag, parseFlags } from './flags.js';
import { kestrelCommand } from './self.js';
import { oneOf } from './train.js';

const FLAGS = {
  nproc: { type: 'string', short: 'n' }, 'master-port': { type: 'string' }, 'master-addr': { type: 'string' },
  hostfile: { type: 'string' }, backend: { type: 'string' }, mpi: { type: 'string' },
  elastic: { type: 'boolean' }, 'min-ranks': { type: 'string' }, 'max-restarts': { type: 'string' },
} as const;

const DEFAULT_MAX_RESTARTS = 3;

/** The program and arguments of a rank: `kestrel ...` becomes this node running this kestrel's CLI. */
export function rankCommand(words: string[]): { command: string; args: string[] } {
  return words[0] === 'kestrel' ? kestrelCommand(words.slice(1)) : { command: words[0], args: words.slice(1) };
}

function report(r: LaunchResult): number {
  if (r.exitCode !== 0) process.stderr.write(`kestrel launch: ${failureMessage(r)}\n`);
  return r.exitCode;
}

/** Starts `words` as n ranks on this machine and waits; the exit code. */
export async function launchRanks(n: number, words: string[], opts: { masterPort?: number; masterAddr?: string } = {}): Promise<number> {
  return report(await launch({ nproc: n, ...rankCommand(words), ...opts }));
}

/** --min-ranks (default: all of them) and --max-restarts of an elastic launch. */
function elasticLimits(values: Parameters<typeof numberFlag>[0], n: number): { minRanks: number; maxRestarts: number } {
  const minRanks = numberFlag(values, 'min-ranks', { int: true, min: 1 }) ?? n;
  const maxRestarts = numberFlag(values, 'max-restarts', { int: true, min: 0 }) ?? DEFAULT_MAX_RESTARTS;
  return { minRanks, maxRestarts };
}

/** The KESTREL_* settings of this process, for ranks on other machines (local ones inherit them anyway). */
const kestrelEnv = (): Record<string, string> =>
  Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[0].startsWith('KESTREL_') && e[1] !== undefined));

export async function launchCommand(argv: string[]): Promise<number> {
  const split = argv.indexOf('--');
  if (split < 0 || split === argv.length - 1) throw new Error('launch: give the command to run after --, e.g. kestrel launch -n 2 -- kestrel train ...');
  const { values } = parseFlags(argv.slice(0, split), FLAGS);
  const words = argv.slice(split + 1);
  const n = numberFlag(values, 'nproc', { int: true, min: 1 });
  const backend = oneOf(values.backend ?? (values.hostfile ? 'mpi' : 'shm'), DIST_BACKENDS, '--backend');
  if (backend === 'shm') {
    if (values.hostfile) throw new Error('launch: --hostfile starts the ranks through mpirun, which needs --backend mpi (the default with a hostfile)');
    if (n === undefined) throw new Error('launch: -n N (the number of ranks) is required');
    const masterPort = numberFlag(values, 'master-port', { int: true, min: 1, max: 65535 });
    if (values.elastic) return launchElastic({ nproc: n, ...elasticLimits(values, n), ...rankCommand(words), launch: { masterPort, masterAddr: values['master-addr'] } });
    return launchRanks(n, words, { masterPort, masterAddr: values['master-addr'] });
  }
  const hostfile = values.hostfile;
  const hosts = hostfile ? readHostfile(hostfile) : undefined;
  const nproc = n ?? hosts?.reduce((s, h) => s + h.slots, 0);
  if (nproc === undefined) throw new Error('launch: -n N (the number of ranks) is required without a --hostfile');
  const implementation = values.mpi ? oneOf(values.mpi, MPI_IMPLEMENTATIONS, '--mpi') : detectMpi();
  if (!implementation) throw new Error('launch: --backend mpi needs Open MPI or MPICH (no mpirun on PATH; on Debian: apt-get install openmpi-bin libopenmpi-dev)');
  const rank = rankCommand(words);
  if (values.elastic) {
    // the hostfile is read again at each restart: machines removed from it or added back count
    const listed = hostfile ? () => {
      const text = readFileSync(hostfile, 'utf8');
      return { slots: parseHostfile(text, hostfile).reduce((s, h) => s + h.slots, 0), text };
    } : undefined;
    const start = (world: number, args: string[]): Promise<LaunchResult> =>
      launchMpi({ implementation, nproc: world, hosts: hostfile ? readHostfile(hostfile) : undefined, command: rank.command, args, env: kestrelEnv() });
    return launchElastic({ nproc, ...elasticLimits(values, nproc), ...rank, start, hostfile: listed });
  }
  return report(await launchMpi({ implementation, nproc, hosts, ...rank, env: kestrelEnv() }));
}
