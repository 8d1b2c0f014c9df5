// Starts a job's ranks through mpirun (Open MPI's or MPICH's, whose flags differ): `kestrel launch
// --backend mpi` on this machine, `--hostfile` across machines. Each rank's output comes back
// tagged by mpirun (Open MPI's --tag-output, MPICH's -prepend-rank), so every stderr line is
// printed as "[rank r] ..." and a failure is reported with its rank and last error line, as the
// local launcher (launch.ts) does. Ctrl-C reaches mpirun, which stops every rank.
import { spawn } from 'node:child_process';
import { hostname } from 'node:os';
import type { Host } from './hostfile.js';
import { type LaunchResult, type RankFailure, Tails, eachLine, exitCodeOf, lastError } from './launch.js';
import { type MpiImplementation, mpirunFor } from './mpi_library.js';
import { EXIT_LINE, PID_LINE } from './mpi_transport.js';
import { loadNative } from '../backend/addon.js';

export interface MpirunOpts {
  implementation: MpiImplementation;
  nproc: number;
  /** the machines and their slots (a hostfile); default: all ranks on this machine */
  hosts?: Host[];
  command: string;
  args: string[];
  /** variables set for every rank, on every machine */
  env?: Record<string, string>;
}

/**
 * The order in which this machine's ranks exit (native/exit_watch.h: a thread woken by each rank's
 * pidfd), or null where it cannot be watched (no addon, Linux < 5.3). MPICH's mpiexec kills every
 * other rank within milliseconds of the first death and then names the lowest rank that ended
 * badly, so this record is what names the rank that died first.
 */
function watchExits(): { add(pid: number): void; first(): { pid: number; ns: number } | null; stop(): void } | null {
  const addon = loadNative();
  let id: number;
  try {
    if (!addon) return null;
    id = addon.exitWatchStart();
  } catch {
    return null;
  }
  return {
    add: (pid) => addon.exitWatchAdd(id, pid),
    // the first wake-up's exit, when it was one rank alone (two at once: which came first is unknown)
    first: () => {
      const e = addon.exitWatchExits(id)[0];
      return e?.pids.length === 1 ? { pid: e.pids[0], ns: e.ns } : null;
    },
    stop: () => addon.exitWatchStop(id),
  };
}

const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

/**
 * mpirun's command line for a job.
 * @example mpirunArgv({ implementation: 'mpich', nproc: 2, hosts: [{ name: 'a', slots: 2 }], command: 'node', args: ['x.js'] }, 'mpirun.mpich')
 * // ['-np', '2', '-hosts', 'a:2', '-prepend-rank', '-genv', ...]
 */
export function mpirunArgv(o: MpirunOpts, mpirun: string): { command: string; args: string[] } {
  const hosts = o.hosts?.map((h) => `${h.name}:${h.slots}`).join(',');
  const slots = o.hosts?.reduce((s, h) => s + h.slots, 0);
  if (slots !== undefined && o.nproc > slots) throw new Error(`launch: -n ${o.nproc} ranks, but the hostfile has ${slots} slots`);
  const env = Object.entries(o.env ?? {});
  if (o.implementation === 'openmpi') {
    // one machine: run as many ranks as asked (the tests run 4 on 2 cores); with a hostfile its slots count
    const placement = hosts ? ['-H', hosts] : ['--oversubscribe'];
    // -x NAME=value sets a variable on every machine (a local rank inherits mpirun's environment anyway)
    const vars = env.flatMap(([k, v]) => ['-x', `${k}=${v}`]);
    return { command: mpirun, args: [...(isRoot() ? ['--allow-run-as-root'] : []), '-np', String(o.nproc), ...placement, '--tag-output', ...vars, o.command, ...o.args] };
  }
  const vars = env.flatMap(([k, v]) => ['-genv', k, v]);
  return { command: mpirun, args: ['-np', String(o.nproc), ...(hosts ? ['-hosts', hosts] : []), '-prepend-rank', ...vars, o.command, ...o.args] };
}

/** A tagged output line's rank and text: Open MPI "[1,R]<stderr>:text", MPICH "[R] text"; null: mpirun's own line. */
export function untag(line: string): { rank: number; text: string } | null {
  const m = /^\[\d+,(\d+)\]<std(?:out|err)>:(.*)$/.exec(line) ?? /^\[(\d+)\] ?(.*)$/.exec(line);
  return m ? { rank: Number(m[1]), text: m[2] } : null;
}

/**
 * The rank mpirun blames for the job's end, from its own messages: a rank that called MPI_Abort,
 * died of a signal, or exited non-zero. Null when it names none.
 */
export function blamedRank(lines: string[], pids: Map<string, number> = new Map()): { rank: number; signal: string | null; code: number | null } | null {
  const text = lines.join('\n');
  // MPICH names the process by pid and host: "PID 123 RUNNING AT host / EXIT CODE: 9" (9 = killed by SIGKILL)
  const byPid = /PID (\d+) RUNNING AT (\S+)\s+=\s+EXIT CODE: (\d+)/.exec(text);
  // MPICH names the host as the hostfile does ("localhost"), the rank as the machine does: by pid alone when only one rank has it
  const samePid = byPid ? [...pids].filter(([key]) => key.startsWith(`${byPid[1]}@`)) : [];
  const pidRank = byPid ? (pids.get(`${byPid[1]}@${byPid[2]}`) ?? (samePid.length === 1 ? samePid[0][1] : undefined)) : undefined;
  const patterns: [RegExp, (m: RegExpExecArray) => { rank: number; signal: string | null; code: number | null }][] = [
    // a rank killed by a signal is the cause: the others' MPI_Abort or exit came after it
    [/process rank (\d+) with PID \d+ on node \S+ exited on signal (\d+)/, (m) => ({ rank: +m[1], signal: signalName(+m[2]), code: null })],
    [/MPI_ABORT was invoked on rank (\d+) in communicator \S+\s+with errorcode (\d+)/, (m) => ({ rank: +m[1], signal: null, code: +m[2] })],
    [/MPI_Abort\(MPI_COMM_WORLD, (\d+)\) - process (\d+)/, (m) => ({ rank: +m[2], signal: null, code: +m[1] })],
    [/Process name: \[\[\d+,\d+\],(\d+)\]\s+Exit code:\s+(\d+)/, (m) => ({ rank: +m[1], signal: null, code: +m[2] })],
  ];
  for (const [re, f] of patterns) {
    const m = re.exec(text);
    if (m) return f(m);
  }
  if (byPid && pidRank !== undefined) {
    const code = Number(byPid[3]);
    return code > 128 || code === 9 ? { rank: pidRank, signal: signalName(code > 128 ? code - 128 : code), code: null } : { rank: pidRank, signal: null, code };
  }
  return null;
}

const SIGNAL_NAMES: Record<number, string> = { 1: 'SIGHUP', 2: 'SIGINT', 6: 'SIGABRT', 9: 'SIGKILL', 11: 'SIGSEGV', 15: 'SIGTERM' };
const signalName = (n: number): string => SIGNAL_NAMES[n] ?? `signal ${n}`;

/**
 * Runs the job through mpirun and waits for it.
 * @example const r = await launchMpi({ implementation: 'openmpi', nproc: 2, command: process.execPath, args: ['train.js'] });
 */
export async function launchMpi(o: MpirunOpts & {
  /** where ranks' stderr lines go (default: this process's stderr, prefixed "[rank r] ") */
  onStderr?: (rank: number, line: string) => void;
  /** where ranks' stdout lines go (default: this process's stdout, untagged) */
  onStdout?: (rank: number, line: string) => void;
  /** 'ignore' drops the ranks' stdout (default 'inherit') */
  stdout?: 'inherit' | 'ignore';
}): Promise<LaunchResult> {
  const { command, args } = mpirunArgv(o, mpirunFor(o.implementation));
  const onStderr = o.onStderr ?? ((rank, line) => process.stderr.write(`[rank ${rank}] ${line}\n`));
  const tails = new Tails();
  const own: string[] = []; // mpirun's own lines (its verdict on the job)
  const pids = new Map<string, number>(); // "pid@host" -> rank, from the ranks' PID_LINE
  // the first rank that failed: the first to say so before it exits (EXIT_LINE), or the first of
  // this machine's ranks to exit (a killed one says nothing), whichever came first; mpirun's own
  // report may name a rank it stopped while cleaning up (MPICH does), so it only decides when these say nothing
  const said: { first: { rank: number; code: number; ns: number } | null } = { first: null };
  const exits = watchExits();
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...o.env, KESTREL_MPI_LAUNCHER: '1' } });
  let interrupted: LaunchResult['interrupted'] = null;
  const onSignal = (signal: 'SIGINT' | 'SIGTERM'): void => {
    interrupted ??= signal;
    child.kill(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const route = (line: string, stream: 'stdout' | 'stderr'): void => {
    const t = untag(line);
    if (!t) {
      if (line.trim()) own.push(line);
      if (o.stdout !== 'ignore' || stream === 'stderr') process.stderr.write(`${line}\n`);
      return;
    }
    if (line.includes('<stdout>:') || (stream === 'stdout' && !line.includes('<stderr>:'))) {
      if (o.onStdout) o.onStdout(t.rank, t.text);
      else if (o.stdout !== 'ignore') process.stdout.write(`${t.text}\n`);
      return;
    }
    const pid = PID_LINE.exec(t.text);
    if (pid) {
      pids.set(`${pid[2]}@${pid[3]}`, Number(pid[1]));
      if (pid[3] === hostname()) exits?.add(Number(pid[2]));
      return;
    }
    const exit = EXIT_LINE.exec(t.text);
    if (exit) return void (said.first ??= { rank: t.rank, code: Number(exit[1]), ns: Number(process.hrtime.bigint()) });
    onStderr(t.rank, t.text);
    tails.add(t.rank, t.text);
  };
  const flushOut = eachLine(child.stdout, (l) => route(l, 'stdout'));
  const flushErr = eachLine(child.stderr, (l) => route(l, 'stderr'));
  const [code, signal, spawnError] = await new Promise<[number | null, NodeJS.Signals | null, Error | null]>((resolve) => {
    child.once('error', (e) => resolve([null, null, e]));
    child.once('close', (c, s) => resolve([c, s, null]));
  });
  const exited = exits?.first() ?? null;
  exits?.stop();
  flushOut();
  flushErr();
  process.removeListener('SIGINT', onSignal);
  process.removeListener('SIGTERM', onSignal);
  if (spawnError) return { exitCode: 1, failure: { rank: 0, code: null, signal: null, message: `${command}: ${spawnError.message}` }, interrupted };
  if (code === 0 && !signal) return { exitCode: 0, failure: null, interrupted };
  if (interrupted) return { exitCode: exitCodeOf(null, interrupted), failure: null, interrupted };
  const byMpirun = blamedRank(own, pids);
  const exitedRank = exited ? pids.get(`${exited.pid}@${hostname()}`) : undefined;
  const seen = exitedRank !== undefined && (!said.first || exited!.ns < said.first.ns)
    ? { rank: exitedRank, code: said.first?.rank === exitedRank ? said.first.code : null, signal: null }
    : said.first && { rank: said.first.rank, code: said.first.code, signal: null };
  // Open MPI names the rank a signal killed exactly; else the rank seen failing first, else mpirun's word
  const exact = byMpirun?.signal && own.some((l) => /process rank \d+ with PID \d+ on node \S+ exited on signal/.test(l));
  const blamed = exact || !seen ? byMpirun : byMpirun?.rank === seen.rank ? byMpirun : seen;
  // a rank seen gone without a word (no exit line: killed, or its machine lost) keeps code null,
  // and the job exits with mpirun's own code
  const failure: RankFailure = blamed
    ? { ...blamed, message: lastError(tails.of(blamed.rank)) }
    : { rank: -1, code, signal, message: lastError(own) || 'mpirun failed without naming a rank' };
  return { exitCode: failure.code === null && !failure.signal ? code || 1 : exitCodeOf(failure, null), failure, interrupted };
}
