// Finds the MPI this job runs on and the small library that lets the addon reach it: Kestrel
// compiles native/mpi/kestrel_mpi.cc with that MPI's mpicxx at first use (`-shared -fPIC`) into
// ~/.cache/kestrel/mpi, one file per implementation and source hash (Open MPI and MPICH differ in
// ABI), and the addon dlopen's it. Nothing here runs unless a job asks for MPI, so Kestrel installs,
// builds and runs where no MPI is installed.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../backend/addon.js';

export type MpiImplementation = 'openmpi' | 'mpich';
export const MPI_IMPLEMENTATIONS: readonly MpiImplementation[] = ['openmpi', 'mpich'];

type Env = Record<string, string | undefined>;

/** Debian's names for each implementation's tools (the alternatives `mpirun`/`mpicxx` point at one of them) */
const TOOLS: Record<MpiImplementation, { mpirun: string[]; mpicxx: string[]; name: string }> = {
  openmpi: { mpirun: ['mpirun.openmpi', 'mpirun'], mpicxx: ['mpicxx.openmpi', 'mpicxx'], name: 'Open MPI' },
  mpich: { mpirun: ['mpirun.mpich', 'mpiexec.hydra', 'mpirun'], mpicxx: ['mpicxx.mpich', 'mpicxx'], name: 'MPICH' },
};

/** What a tool prints for `args`, or null when it is not installed or fails. */
function output(cmd: string, args: string[]): string | null {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 });
  } catch {
    return null;
  }
}

/** Which implementation a tool's `--version` (mpirun) or `-show` (mpicxx) text belongs to. */
export function implementationOf(text: string): MpiImplementation | null {
  if (/open ?mpi|ompi/i.test(text)) return 'openmpi';
  if (/mpich|hydra/i.test(text)) return 'mpich';
  return null;
}

/**
 * The MPI of this job: KESTREL_MPI when set; the launcher's own variables (Open MPI's OMPI_*,
 * MPICH hydra's PMI_*); else the implementation of the `mpirun` on PATH. Null: no MPI here.
 * @example detectMpi({ OMPI_COMM_WORLD_SIZE: '2' }) // 'openmpi'
 */
export function detectMpi(env: Env = process.env): MpiImplementation | null {
  const asked = env.KESTREL_MPI;
  if (asked) {
    if (!MPI_IMPLEMENTATIONS.includes(asked as MpiImplementation)) throw new Error(`environment: KESTREL_MPI='${asked}' must be one of ${MPI_IMPLEMENTATIONS.join(', ')}`);
    return asked as MpiImplementation;
  }
  if (env.OMPI_COMM_WORLD_SIZE !== undefined) return 'openmpi';
  if (env.PMI_RANK !== undefined || env.HYDRA_CONTROL_FD !== undefined) return 'mpich';
  const version = output('mpirun', ['--version']);
  return version ? implementationOf(version) : null;
}

/** The first of `names` that runs and belongs to `impl` (checked with `check`'s arguments), or null. */
function findTool(impl: MpiImplementation, names: string[], check: string[]): string | null {
  for (const n of names) {
    const text = output(n, check);
    if (text !== null && implementationOf(text) === impl) return n;
  }
  return null;
}

/** The mpirun of an implementation, or an error that says what to install. */
export function mpirunFor(impl: MpiImplementation): string {
  const found = findTool(impl, TOOLS[impl].mpirun, ['--version']);
  if (!found) throw new Error(`MPI: no ${TOOLS[impl].name} mpirun found (tried ${TOOLS[impl].mpirun.join(', ')}); on Debian: apt-get install ${impl === 'openmpi' ? 'openmpi-bin libopenmpi-dev' : 'mpich libmpich-dev'}`);
  return found;
}

const cacheDir = (env: Env): string => join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'kestrel', 'mpi');

/**
 * The path of kestrel_mpi.so for `impl`, compiling it when the cache lacks it. Ranks that start
 * together may all compile: each writes its own temporary and renames it, so readers never see
 * half a file.
 */
export function mpiLibrary(impl: MpiImplementation, env: Env = process.env): string {
  const src = join(packageRoot(), 'native', 'mpi', 'kestrel_mpi.cc');
  const header = join(packageRoot(), 'native', 'mpi', 'kestrel_mpi.h');
  if (!existsSync(src)) throw new Error(`MPI: ${src} is missing (a partial install?)`);
  const cxx = findTool(impl, TOOLS[impl].mpicxx, ['-show']);
  if (!cxx) throw new Error(`MPI: no ${TOOLS[impl].name} mpicxx found (tried ${TOOLS[impl].mpicxx.join(', ')}); it builds Kestrel's MPI library at first use. On Debian: apt-get install ${impl === 'openmpi' ? 'libopenmpi-dev' : 'libmpich-dev'}`);
  const show = output(cxx, ['-show']) ?? '';
  const key = createHash('sha256').update(readFileSync(src)).update(readFileSync(header)).update(show).digest('hex').slice(0, 16);
  const dir = cacheDir(env);
  const path = join(dir, `kestrel_mpi-${impl}-${key}.so`);
  if (existsSync(path)) return path;
  mkdirSync(dir, { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    execFileSync(cxx, ['-shared', '-fPIC', '-O2', '-DOMPI_SKIP_MPICXX', '-DMPICH_SKIP_MPICXX', src, '-o', tmp], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000 });
  } catch (e) {
    rmSync(tmp, { force: true });
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(`MPI: ${cxx} could not build ${src}: ${err.stderr?.toString().trim() || err.message}`);
  }
  renameSync(tmp, path);
  return path;
}
