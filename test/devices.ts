// The native backends the kernel and model tests run on: 'cpu' when the addon is built, and
// 'cuda' on a GPU when KESTREL_TEST_GPU=1 (bench/gpu/run.sh) or else on the CUDA emulator
// (KESTREL_CUDA_EMULATE=1: the same kernel sources run on the host), so CI checks the CUDA
// backend without a GPU. Import this module before any test opens the 'cuda' backend.
import * as k from '../src/index.js';

if (process.env.KESTREL_TEST_GPU !== '1' && process.env.KESTREL_CUDA_EMULATE === undefined) process.env.KESTREL_CUDA_EMULATE = '1';

export type Device = 'cpu' | 'cuda';

/** false when the device can run, else why not (a describe()'s skip option). */
export function skipUnless(device: Device): string | false {
  if (k.hasBackend(device)) return false;
  try {
    k.getBackend(device);
    return false;
  } catch (e) {
    return device === 'cuda' ? `no CUDA device (${(e as Error).message})` : (e as Error).message;
  }
}

/**
 * Every native device, whether usable here or not (tests skip the unusable ones with the reason);
 * KESTREL_TEST_DEVICES=cuda narrows it (bench/gpu/run.sh: the CPU was tested by CI already).
 */
export const ALL_DEVICES: readonly Device[] = (['cpu', 'cuda'] as const).filter(
  (d) => !process.env.KESTREL_TEST_DEVICES || process.env.KESTREL_TEST_DEVICES.split(',').includes(d),
);
