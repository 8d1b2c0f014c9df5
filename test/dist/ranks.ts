// Starts rank processes for tests the way `kestrel launch` does (same environment), without the
// launcher's supervision, so a test can watch what each surviving rank does when a peer fails.
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { freePort } from '../../src/dist/launch.js';
import { childArgs } from '../child_js.js';

export interface RankRun {
  rank: number;
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** Runs `file` (a .ts rank script) as N ranks with extra env per rank; resolves when all have exited. */
export async function runRanks(file: string, n: number, env: (rank: number) => Record<string, string> = () => ({}), timeoutMs = 60_000): Promise<RankRun[]> {
  const port = await freePort();
  const children: ChildProcess[] = [];
  const timer = setTimeout(() => children.forEach((c) => c.kill('SIGKILL')), timeoutMs);
  try {
    return await Promise.all(Array.from({ length: n }, (_, rank) => new Promise<RankRun>((resolve) => {
      const child = spawn(process.execPath, childArgs(file), {
        env: {
          ...process.env, RANK: String(rank), WORLD_SIZE: String(n), LOCAL_RANK: String(rank), LOCAL_WORLD_SIZE: String(n),
          MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), KESTREL_DIST_SHM_PREFIX: `/kestrel-test-${process.pid}-${port}`, ...env(rank),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.push(child);
      let stdout = '';
      let stderr = '';
      child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (code, signal) => resolve({ rank, code, signal, stdout, stderr }));
    })));
  } finally {
    clearTimeout(timer);
  }
}

/** Kestrel's segments in /dev/shm now (a test's job must leave none). */
export const kestrelSegments = (): string[] => readdirSync('/dev/shm').filter((n) => n.startsWith('kestrel-'));

/**
 * The segments that appeared since `before` and that this test's job left behind. A segment is
 * named for the process that handed it out (kestrel-<pid>-...: this process when it launched the
 * ranks itself, else the job's rank 0): one named for a process still alive other than this one
 * belongs to a job that is still running, such as another test file's (the runner runs two files
 * at once), and is not counted.
 */
export function segmentsLeft(before: readonly string[]): string[] {
  return kestrelSegments().filter((s) => {
    if (before.includes(s)) return false;
    const owner = Number(/^kestrel-(\d+)/.exec(s)?.[1]);
    return !(owner > 0) || owner === process.pid || !alive(owner);
  });
}

/** Whether a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
