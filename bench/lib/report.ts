// Shared benchmark plumbing: machine facts, the commit, medians, peers run through Debian's
// python3 with OpenBLAS's core-type overrides unset, and the results file.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
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
  const blas = referenceBlas();
  if (blas) return { out: null, why: blas };
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

/**
 * Why Debian's PyTorch and numpy would run on the reference BLAS (libblas3's Fortran loops, about
 * 5 GFLOP/s: a float32 peer 20-40x slower than it should be), or null when an optimized BLAS
 * provides libblas.so.3 (or this is not a Debian-style system).
 */
function referenceBlas(): string | null {
  const lib = '/usr/lib/x86_64-linux-gnu/libblas.so.3';
  if (!existsSync(lib)) return null;
  const target = realpathSync(lib);
  return /\/blas\/libblas/.test(target)
    ? `libblas.so.3 is the reference BLAS (${target}); install the peers' BLAS first: apt-get install -y libopenblas0-pthread (../shared/bench/README.md)`
    : null;
}

/**
 * A peer run twice, with OpenBLAS's own core-type detection and with the core type forced to
 * peerCoretype(), keeping the faster by `seconds` (the row is the last stdout line, as JSON):
 * OpenBLAS 0.3.21 takes newer Intel CPUs for Prescott (SSE3), so neither setting alone is the
 * peer's best on every CPU, and no ratio may flatter Kestrel.
 */
export function runPeerFastest<T extends object>(script: string, args: string[], seconds: (row: T) => number, timeoutMs?: number, extraEnv: Record<string, string> = {}): { row: (T & { openblas_coretype: string }) | null; why: string } {
  let row: (T & { openblas_coretype: string }) | null = null;
  const why: string[] = [];
  for (const coretype of [undefined, peerCoretype()]) {
    const r = runPeer(script, args, timeoutMs, coretype, extraEnv);
    if (r.out === null) {
      why.push(r.why);
      continue;
    }
    const run = { ...(JSON.parse(r.out.trim().split('\n').at(-1)!) as T), openblas_coretype: coretype ?? 'auto' };
    if (!row || seconds(run) < seconds(row)) row = run;
  }
  return { row, why: row ? '' : [...new Set(why)].join('; ') };
}
