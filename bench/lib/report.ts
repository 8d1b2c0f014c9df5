// Shared benchmark plumbing: machine facts, the commit, medians, peers run through Debian's
// python3 with OpenBLAS's core-type overrides unset, and the results file.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadNative } from '../../src/backend/addon.js';

export const BENCH_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
export const SHARED_BENCH = join(BENCH_DIR, '..', '..', 'shared', 'bench');

/** The checked-out commit, or 'unknown' outside a git checkout. */
export function commitHash(): string {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: BENCH_DIR, encoding: 'utf8' }).trim();
  } catch {
    return 'unknown';
  }
}

/** The CPU model name from /proc/cpuinfo. */
export function cpuModel(): string {
  try {
    return /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1].trim() ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

export function machine(): { commit: string; cpu: string; cores: number; node: string } {
  let cores = 0;
  try {
    cores = readFileSync('/proc/cpuinfo', 'utf8').split('\n').filter((l) => l.startsWith('processor')).length;
  } catch {
    /* not Linux */
  }
  return { commit: commitHash(), cpu: cpuModel(), cores, node: process.version };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * The OpenBLAS core type for the kernels this CPU can run. OpenBLAS 0.3.21 (Debian 12) does not
 * recognise newer Intel models and falls back to its generic SSE3 "Prescott" kernels, several
 * times slower than its AVX-512 ones; a peer run forced to this type is the honest comparison.
 */
export function peerCoretype(): string {
  const f = loadNative()?.info();
  return !f ? 'Prescott' : f.avx512f ? 'SkylakeX' : f.avx2 ? 'Haswell' : 'Prescott';
}

/**
 * Runs a peer script with /usr/bin/python3 (OpenBLAS left to detect the CPU unless `coretype`
 * names its kernels); returns stdout, or null (with the reason) when it cannot run.
 */
export function runPeer(script: string, args: string[], timeoutMs = 1_800_000, coretype?: string, extraEnv: Record<string, string> = {}): { out: string | null; why: string } {
  const env = { ...process.env, ...extraEnv };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  if (coretype) env.OPENBLAS_CORETYPE = coretype;
  const r = spawnSync('/usr/bin/python3', [script, ...args], { env, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 });
  if (r.error) return { out: null, why: r.error.message };
  if (r.status !== 0) return { out: null, why: (r.stderr || '').trim().split('\n').slice(-3).join(' | ') };
  return { out: r.stdout, why: '' };
}

export function writeResult(name: string, body: object): string {
  const path = join(BENCH_DIR, 'results', `${name}.json`);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify({ ...machine(), date: new Date().toISOString(), ...body }, null, 2) + '\n');
  return path;
}
