// Backend registry: 'cpu' (native addon) when it is built, else 'ref'; 'cuda' when a GPU (or the
// emulator, KESTREL_CUDA_EMULATE=1) is usable. KESTREL_BACKEND=ref|cpu|cuda picks the default;
// tensors remember the backend of their storage.
import type { Tensor } from '../tensor/tensor.js';
import { createCpuBackend } from './cpu/backend.js';
import { createCudaBackend } from './cuda/backend.js';
import { nativeLoadError } from './addon.js';
import type { Backend, BackendName } from './kernels.js';
import { refBackend } from './ref/backend.js';

export type { Backend, BackendName, Kernels, SpectralKernels, StftOpts, StftMode, View } from './kernels.js';
export { withLayout } from './kernels.js';

const backends = new Map<string, Backend>([['ref', refBackend]]);
let cpuTried = false;
let cudaError: string | null = null;

export function getBackend(name: string): Backend {
  if (name === 'cpu' && !cpuTried) {
    cpuTried = true;
    const cpu = createCpuBackend();
    if (cpu) backends.set('cpu', cpu);
  }
  if (name === 'cuda' && !backends.has('cuda') && cudaError === null) {
    try {
      backends.set('cuda', createCudaBackend());
    } catch (e) {
      cudaError = (e as Error).message;
    }
  }
  const b = backends.get(name);
  if (!b) {
    if (name === 'cpu') throw new Error(`backend 'cpu' is unavailable: ${nativeLoadError()}`);
    if (name === 'cuda') throw new Error(`backend 'cuda' is unavailable: ${cudaError}`);
    throw new Error(`unknown backend '${name}' (expected 'cpu', 'cuda' or 'ref')`);
  }
  return b;
}

export function hasBackend(name: BackendName): boolean {
  try {
    getBackend(name);
    return true;
  } catch {
    return false;
  }
}

function initialDefault(): Backend {
  const env = process.env.KESTREL_BACKEND;
  if (env) return getBackend(env);
  return hasBackend('cpu') ? getBackend('cpu') : refBackend;
}

let current: Backend | null = null;

export function defaultBackend(): Backend {
  return (current ??= initialDefault());
}

/** Sets the backend new tensors are created on. */
export function setDefaultBackend(name: BackendName): void {
  current = getBackend(name);
}

export const backendOf = (t: Tensor): Backend => getBackend(t.backendName);
