// The CUDA context of this process: the libraries found, the device opened, its architecture.
// KESTREL_CUDA_EMULATE=1 opens the host emulator instead of a GPU (native/cuda/emu/), which runs
// the same kernel sources on the CPU so that the CUDA backend is tested where there is no GPU.
import { type CudaDeviceInfo, type CudaLibraryStatus, type NativeAddon, loadNative, nativeLoadError } from '../addon.js';
import { libraryCandidates } from './libraries.js';

export interface CudaLibraries {
  driver: CudaLibraryStatus;
  nvrtc: CudaLibraryStatus;
  cublasLt: CudaLibraryStatus;
}

export interface CudaContext {
  addon: NativeAddon;
  device: CudaDeviceInfo;
  libraries: CudaLibraries;
  emulated: boolean;
  /** NVRTC's target: sm_90a on Hopper (its wgmma/TMA instructions), sm_XY elsewhere */
  arch: string;
}

/** What `kestrel doctor` and `--device auto` need to know, without throwing. */
export interface CudaStatus {
  usable: boolean;
  /** why not, and what to install */
  reason: string;
  device: CudaDeviceInfo | null;
  libraries: CudaLibraries | null;
  emulated: boolean;
}

let context: CudaContext | null = null;
let failure: Error | null = null;

export const emulationRequested = (): boolean => process.env.KESTREL_CUDA_EMULATE === '1';

function open(): CudaContext {
  const addon = loadNative();
  if (!addon) throw new Error(`the native addon is not built (${nativeLoadError()})`);
  const emulated = emulationRequested();
  const c = libraryCandidates();
  const libraries = emulated
    ? { driver: emulatedLib('libcuda'), nvrtc: emulatedLib('libnvrtc'), cublasLt: emulatedLib('libcublasLt') }
    : addon.cudaLoad(c.driver, c.nvrtc, c.cublasLt);
  if (!emulated) {
    const missing = [libraries.driver, libraries.nvrtc, libraries.cublasLt].filter((l) => !l.found).map((l) => l.error);
    if (missing.length) throw new Error(missing.join('; '));
  }
  const device = addon.cudaInit(emulated, Number(process.env.KESTREL_CUDA_DEVICE ?? 0));
  const cc = `${device.ccMajor}${device.ccMinor}`;
  return { addon, device, libraries, emulated, arch: `sm_${cc}${cc === '90' ? 'a' : ''}` };
}

const emulatedLib = (name: string): CudaLibraryStatus => ({ found: true, path: `(emulated ${name})`, version: 'emulator', error: '' });

/** The context, opening it on first use; throws an Error that says what is missing. */
export function cudaContext(): CudaContext {
  if (context) return context;
  if (failure) throw failure;
  try {
    context = open();
    return context;
  } catch (e) {
    failure = new Error(`no usable CUDA device: ${(e as Error).message}`);
    throw failure;
  }
}

export function cudaStatus(): CudaStatus {
  try {
    const c = cudaContext();
    return { usable: true, reason: '', device: c.device, libraries: c.libraries, emulated: c.emulated };
  } catch (e) {
    let libraries: CudaLibraries | null = null;
    const addon = loadNative();
    if (addon && !emulationRequested()) {
      const c = libraryCandidates();
      libraries = addon.cudaLoad(c.driver, c.nvrtc, c.cublasLt);
    }
    return { usable: false, reason: (e as Error).message, device: null, libraries, emulated: emulationRequested() };
  }
}
