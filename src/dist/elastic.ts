// Elastic restart (torchrun's --max-restarts, on fewer ranks): runs a `kestrel train` job with a
// launcher (this machine's, or mpirun's with a hostfile); when a rank dies of a signal (kill -9, the
// OOM killer, a lost machine) the launcher stops the others, and the job starts again from the
// latest checkpoint in --output on the ranks that remain, keeping the global batch
// (micro-batch × grad-accum × world) by raising --grad-accum. With a hostfile, the file is read
// again at each restart: when it changed since the failed start (a machine removed, or one that
// came back added) it says how many slots there are, up to -n; unchanged, the dead rank's slot is
// taken as lost. The trainer's resume cuts metrics.jsonl back to the checkpoint, so every step
// appears exactly once; a save killed midway leaves only a temporary (removed at the next start),
// never a corrupt checkpoint.
import { listCheckpoints, truncateLog } from '../train/checkpoint.js';
import { join } from 'node:path';
import { type LaunchOpts, type LaunchResult, failureMessage, launch } from './launch.js';

export interface ElasticOpts {
  nproc: number;
  /** fewer ranks than this left: the job fails instead of restarting */
  minRanks: number;
  /** restarts allowed after failures (default 3) */
  maxRestarts: number;
  /** the rank command, `kestrel train ...` resolved to a program and its arguments */
  command: string;
  args: string[];
  /** for tests: the launcher's other options (stderr routing, stdout) */
  launch?: Partial<LaunchOpts>;
  /** starts the ranks some other way (mpirun); default: this machine's launcher */
  start?: (world: number, args: string[]) => Promise<LaunchResult>;
  /** the hostfile, read afresh at each restart: the slots it lists now, and its text */
  hostfile?: () => { slots: number; text: string };
  log?: (line: string) => void;
}

/** The value of `--name V` / `--name=V` in args, or undefined. */
export function flagValue(args: string[], name: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === name) return args[i + 1];
    if (args[i].startsWith(`${name}=`)) return args[i].slice(name.length + 1);
  }
  return undefined;
}

/** args with `--name value` set (replacing any earlier value). */
export function withFlag(args: string[], name: string, value: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === name) i++;
    else if (!args[i].startsWith(`${name}=`)) out.push(args[i]);
  }
  return [...out, name, value];
}

/**
 * The --grad-accum that keeps `globalMicro` micro-batches per step on `world` ranks; an error that
 * says so when they do not divide.
 * @example accumFor(6, 2) // 3
 */
export function accumFor(globalMicro: number, world: number): number {
  if (globalMicro % world !== 0)
    throw new Error(`launch --elastic: the global batch of ${globalMicro} micro-batches (batch-size × grad-accum × ranks) does not divide over ${world} ranks; the job cannot keep its batch size (choose -n and --grad-accum so that it does)`);
  return globalMicro / world;
}

/**
 * Runs the job, restarting it on fewer ranks after a rank dies; the exit code.
 * @example await launchElastic({ nproc: 4, minRanks: 2, maxRestarts: 3, command: process.execPath, args: ['kestrel.js', 'train', ...] });
 */
export async function launchElastic(o: ElasticOpts): Promise<number> {
  const log = o.log ?? ((line) => process.stderr.write(`kestrel launch --elastic: ${line}\n`));
  if (!Number.isInteger(o.minRanks) || o.minRanks < 1 || o.minRanks > o.nproc) throw new Error(`launch: --min-ranks must be in 1..${o.nproc} (-n), got ${o.minRanks}`);
  const output = flagValue(o.args, '--output');
  if (!output) throw new Error('launch --elastic: the command needs --output (where the checkpoints it restarts from are)');
  if (!flagValue(o.args, '--save-every')) log('warning: no --save-every: a restart begins again from step 0');
  const accum = Number(flagValue(o.args, '--grad-accum') ?? 1);
  if (!Number.isInteger(accum) || accum < 1) throw new Error(`launch --elastic: --grad-accum must be a positive integer, got ${flagValue(o.args, '--grad-accum')}`);
  const globalMicro = accum * o.nproc;
  const start = o.start ?? ((world, args) => launch({ ...o.launch, nproc: world, command: o.command, args }));
  let listed = o.hostfile?.();
  let world = Math.min(o.nproc, listed?.slots ?? o.nproc);
  if (world < o.minRanks) throw new Error(`launch --elastic: the hostfile has ${world} slots, fewer than --min-ranks ${o.minRanks}`);
  let args = world === o.nproc ? o.args : withFlag(o.args, '--grad-accum', String(accumFor(globalMicro, world)));
  for (let restarts = 0; ; restarts++) {
    const r: LaunchResult = await start(world, args);
    if (r.exitCode === 0 || r.interrupted) return r.exitCode;
    log(failureMessage(r));
    // an error exit (a bad flag, a diverged loss) would come back on any number of ranks: only a death restarts
    if (!died(r)) return (log('not restarting: the rank failed with an error, not by a signal'), r.exitCode);
    if (restarts >= o.maxRestarts) return (log(`giving up after ${restarts} restart${restarts === 1 ? '' : 's'} (--max-restarts ${o.maxRestarts})`), r.exitCode);
    const now = o.hostfile?.();
    const changed = now !== undefined && now.text !== listed?.text;
    listed = now;
    // the dead rank's slot is lost, unless the hostfile now says otherwise
    const next = changed ? Math.min(o.nproc, now.slots) : world - 1;
    if (next < o.minRanks) return (log(`${next} rank${next === 1 ? '' : 's'} would remain, fewer than --min-ranks ${o.minRanks}`), r.exitCode);
    const nextAccum = accumFor(globalMicro, next);
    const latest = listCheckpoints(output).at(-1);
    // no checkpoint yet: the run starts over, so the steps logged so far go
    if (!latest) truncateLog(join(output, 'metrics.jsonl'), 0);
    const why = changed ? ` (the hostfile changed: ${now.slots} slot${now.slots === 1 ? '' : 's'})` : '';
    log(`restarting on ${next} ranks${why} with --grad-accum ${nextAccum} (global batch unchanged) from ${latest ? latest.path : 'step 0 (no checkpoint yet)'}`);
    world = next;
    args = withFlag(withFlag(o.args, '--grad-accum', String(nextAccum)), '--resume', 'latest');
  }
}

/**
 * Whether the failing rank died rather than failed: killed by a signal, or gone without a word (an
 * mpirun job sees a rank on another machine vanish; a rank that fails says its exit code first).
 */
export function died(r: LaunchResult): boolean {
  const f = r.failure;
  return !!f && (f.signal !== null || (f.code === null && f.rank >= 0));
}
