// `--device cuda|cpu|auto` for every command: where tensors are created. auto (the default
// unless KESTREL_BACKEND is set) takes the GPU when one is usable, with a one-line notice; it
// never picks the CUDA emulator, which exists for tests.
import { cudaStatus } from '../backend/cuda/context.js';
import { hasBackend, setDefaultBackend } from '../backend/index.js';
import type { BackendName } from '../backend/kernels.js';

export const DEVICES = ['auto', 'cuda', 'cpu'] as const;

/** Removes --device X / --device=X from argv; returns the rest and the value (undefined when absent). */
export function takeDeviceFlag(argv: string[]): { rest: string[]; device: string | undefined } {
  const rest: string[] = [];
  let device: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--device') {
      device = argv[++i];
      if (device === undefined) throw new Error(`--device needs a value (${DEVICES.join(', ')})`);
    } else if (a.startsWith('--device=')) device = a.slice('--device='.length);
    else rest.push(a);
  }
  return { rest, device };
}

/** Sets the default backend for --device; returns it. `notice` gets the line auto prints when it picks the GPU. */
export function selectDevice(device: string | undefined, notice: (line: string) => void): BackendName {
  const want = device ?? (process.env.KESTREL_BACKEND ? undefined : 'auto');
  if (want === undefined) return process.env.KESTREL_BACKEND as BackendName;
  if (!(DEVICES as readonly string[]).includes(want)) throw new Error(`--device must be one of ${DEVICES.join(', ')}, got '${want}'`);
  if (want === 'auto') {
    const s = cudaStatus();
    if (s.usable && !s.emulated && s.device) {
      setDefaultBackend('cuda');
      notice(`kestrel: using CUDA device ${process.env.KESTREL_CUDA_DEVICE ?? 0}: ${s.device.name} (${(s.device.totalMemory / 2 ** 30).toFixed(0)} GiB); --device cpu runs on the CPU`);
      return 'cuda';
    }
  }
  const name: BackendName = want === 'cuda' ? 'cuda' : hasBackend('cpu') ? 'cpu' : 'ref';
  setDefaultBackend(name);
  return name;
}
