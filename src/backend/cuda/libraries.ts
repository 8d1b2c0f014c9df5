// Where the CUDA libraries may be: the dynamic loader's own path first, then CUDA_HOME /
// CUDA_PATH, /usr/local/cuda, the driver's usual folders, and the lib folders of pip's nvidia-*
// wheels (where PyTorch users have NVRTC and cuBLAS without a CUDA toolkit). The addon dlopens
// the first candidate that loads (native/cuda/loader.cc); nothing here needs CUDA installed.
import { existsSync, readdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export interface LibraryCandidates {
  driver: string[];
  nvrtc: string[];
  cublasLt: string[];
}

function subdirs(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory() || d.isSymbolicLink()).map((d) => join(dir, d.name));
  } catch {
    return [];
  }
}

/** Python site-packages folders that may hold nvidia-* wheels. */
function sitePackages(env: NodeJS.ProcessEnv): string[] {
  const prefixes = [env.VIRTUAL_ENV, env.CONDA_PREFIX, join(homedir(), '.local'), '/usr/local', '/usr', '/opt/conda']
    .filter((p): p is string => !!p);
  for (const opt of subdirs('/opt')) prefixes.push(join(opt, '.venv'), opt);
  const out: string[] = [];
  for (const prefix of prefixes)
    for (const py of subdirs(join(prefix, 'lib')).filter((d) => /python3/.test(d)))
      for (const leaf of ['site-packages', 'dist-packages']) if (existsSync(join(py, leaf))) out.push(join(py, leaf));
  return out;
}

/** Folders to look in, most specific first; only the ones that exist. */
export function libraryDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const dirs: string[] = [];
  for (const extra of (env.KESTREL_CUDA_LIB_DIRS ?? '').split(':')) if (extra) dirs.push(extra);
  for (const home of [env.CUDA_HOME, env.CUDA_PATH, '/usr/local/cuda'])
    if (home) dirs.push(join(home, 'lib64'), join(home, 'lib'), join(home, 'targets', 'x86_64-linux', 'lib'));
  dirs.push('/usr/lib/x86_64-linux-gnu', '/usr/local/nvidia/lib64', '/usr/lib64', '/usr/lib/wsl/lib');
  for (const site of sitePackages(env))
    for (const pkg of subdirs(join(site, 'nvidia'))) dirs.push(join(pkg, 'lib'));
  return [...new Set(dirs)].filter((d) => existsSync(d));
}

/** Bare names (the loader's search path) first, then each name in each folder. */
export function libraryCandidates(env: NodeJS.ProcessEnv = process.env): LibraryCandidates {
  const dirs = libraryDirs(env);
  const expand = (names: string[]): string[] => [...names, ...dirs.flatMap((d) => names.map((n) => join(d, n)).filter((p) => existsSync(p)))];
  return {
    driver: expand(['libcuda.so.1']),
    nvrtc: expand(['libnvrtc.so.13', 'libnvrtc.so.12']),
    cublasLt: expand(['libcublasLt.so.13', 'libcublasLt.so.12']),
  };
}
