// The launcher (torchrun's job on one machine): starts N rank processes with RANK, WORLD_SIZE,
// LOCAL_RANK, MASTER_ADDR/PORT set, forwards their stderr prefixed by rank, and supervises them:
// the first rank to fail is reported with its rank and last message and the others are stopped
// (SIGTERM, then SIGKILL after a grace period); SIGINT/SIGTERM to the launcher reach every rank.
// Afterwards no rank process and no shared-memory segment of the job is left.
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { loadNative } from '../backend/addon.js';

export interface LaunchOpts {
  nproc: number;
  /** the program and its arguments, run once per rank */
  command: string;
  args: string[];
  masterAddr?: string;
  /** default: a free port */
  masterPort?: number;
  env?: Record<string, string | undefined>;
  /** how long stopped ranks get before SIGKILL (default 5 s) */
  graceMs?: number;
  /** where ranks' stderr lines go (default: this process's stderr, prefixed "[rank r] ") */
  onStderr?: (rank: number, line: string) => void;
  /** 'inherit' (default) or 'ignore' for the ranks' stdout */
  stdout?: 'inherit' | 'ignore';
}

export interface RankFailure {
  rank: number;
  code: number | null;
  signal: string | null;
  /** the rank's last error line on stderr */
  message: string;
}

export interface LaunchResult {
  /** 0 when every rank exited 0; else the failing rank's code (128 + signal number for a signal) */
  exitCode: number;
  /** the first failure is the cause; ranks stopped because of it are not listed */
  failure: RankFailure | null;
  /** set when the launcher itself was interrupted */
  interrupted: 'SIGINT' | 'SIGTERM' | null;
}

export const SIGNAL_CODES: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGSEGV: 11, SIGTERM: 15, SIGABRT: 6 };
const TAIL_LINES = 20;

/** Calls onLine for each complete line of a stream; the returned function flushes a last partial line. */
export function eachLine(stream: NodeJS.ReadableStream | null, onLine: (line: string) => void): () => void {
  let partial = '';
  stream?.setEncoding('utf8');
  stream?.on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) onLine(line);
  });
  return () => {
    if (partial) onLine(partial);
    partial = '';
  };
}

/** Keeps the last lines of each rank's stderr (what lastError reads). */
export class Tails {
  private readonly byRank = new Map<number, string[]>();
  add(rank: number, line: string): void {
    if (!line.trim()) return;
    const t = this.byRank.get(rank) ?? [];
    t.push(line.trim());
    if (t.length > TAIL_LINES) t.shift();
    this.byRank.set(rank, t);
  }
  of(rank: number): string[] {
    return this.byRank.get(rank) ?? [];
  }
}

/** The exit code of a finished job: the failing rank's (128 + signal for a signal), 130/143 after Ctrl-C/SIGTERM, else 0. */
export function exitCodeOf(failure: RankFailure | null, interrupted: LaunchResult['interrupted']): number {
  if (failure) return (failure.code ?? 128 + (SIGNAL_CODES[failure.signal ?? ''] ?? 1)) || 1;
  return interrupted ? (interrupted === 'SIGINT' ? 130 : 143) : 0;
}

/** A TCP port nobody listens on now (the OS picks it). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Removes the job's leftover segments (names starting with prefix) from /dev/shm; their count. */
export function unlinkSegments(prefix: string): number {
  const addon = loadNative();
  let names: string[] = [];
  try {
    names = readdirSync('/dev/shm');
  } catch {
    return 0;
  }
  const mine = names.filter((n) => `/${n}`.startsWith(prefix));
  for (const n of mine) addon?.distUnlink(`/${n}`);
  return mine.length;
}

/** The line of a rank's stderr tail that says what went wrong: the last error line, not a stack frame. */
export function lastError(tail: string[]): string {
  const useful = tail.filter((l) => !/^at\s/.test(l) && !/^Node\.js v\d/.test(l) && !/^\^+$/.test(l));
  return [...useful].reverse().find((l) => /error|kestrel \w+:/i.test(l)) ?? useful.at(-1) ?? '';
}

function describe(f: RankFailure): string {
  const how = f.signal ? `was killed by ${f.signal}` : f.code === null ? 'died without a word (its process is gone)' : `exited with code ${f.code}`;
  return `rank ${f.rank} ${how}${f.message ? `: ${f.message}` : ''}`;
}

/** The message a launcher prints for a failed job. */
export const failureMessage = (r: LaunchResult): string =>
  r.failure ? describe(r.failure) : r.interrupted ? `interrupted by ${r.interrupted}; every rank was stopped` : '';

/**
 * Runs `command args` as N ranks and waits for all of them.
 * @example const r = await launch({ nproc: 2, command: process.execPath, args: ['train.js'] }); process.exitCode = r.exitCode;
 */
export async function launch(o: LaunchOpts): Promise<LaunchResult> {
  if (!Number.isInteger(o.nproc) || o.nproc < 1) throw new Error(`launch: -n must be a positive integer, got ${o.nproc}`);
  const masterAddr = o.masterAddr ?? '127.0.0.1';
  const masterPort = o.masterPort ?? (await freePort(masterAddr));
  const prefix = `/kestrel-${process.pid}-${masterPort}`;
  const graceMs = o.graceMs ?? 5000;
  const onStderr = o.onStderr ?? ((rank, line) => process.stderr.write(`[rank ${rank}] ${line}\n`));
  const children: ChildProcess[] = [];
  const tails = new Tails();
  let failure: RankFailure | null = null;
  let interrupted: LaunchResult['interrupted'] = null;
  let killTimer: NodeJS.Timeout | null = null;

  const stopAll = (signal: NodeJS.Signals): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill(signal);
    killTimer ??= setTimeout(() => {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }, graceMs);
  };
  const onSignal = (signal: 'SIGINT' | 'SIGTERM'): void => {
    interrupted ??= signal;
    stopAll(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const exits = Array.from({ length: o.nproc }, (_, rank) => {
    const env = {
      ...process.env, ...o.env,
      RANK: String(rank), WORLD_SIZE: String(o.nproc), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(o.nproc),
      MASTER_ADDR: masterAddr, MASTER_PORT: String(masterPort),
      KESTREL_DIST_SHM_PREFIX: prefix, KESTREL_LAUNCHER_PID: String(process.pid),
    };
    const child = spawn(o.command, o.args, { env, stdio: ['ignore', o.stdout ?? 'inherit', 'pipe'] });
    children.push(child);
    const flush = eachLine(child.stderr, (line) => (onStderr(rank, line), tails.add(rank, line)));
    return new Promise<void>((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null, spawnError?: Error): void => {
        flush();
        if ((code !== 0 || spawnError) && !failure && !interrupted) {
          failure = { rank, code, signal, message: spawnError?.message ?? lastError(tails.of(rank)) };
          stopAll('SIGTERM');
        }
        resolve();
      };
      child.once('error', (e) => done(null, null, e));
      child.once('close', (code, signal) => done(code, signal));
    });
  });
  try {
    await Promise.all(exits);
  } finally {
    if (killTimer) clearTimeout(killTimer);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    unlinkSegments(prefix);
  }
  const f = failure as RankFailure | null;
  return { exitCode: exitCodeOf(f, interrupted), failure: f, interrupted };
}
