// `k.cuda`: the user-facing CUDA helpers, named as torch.cuda names them.
import type { CudaMemStats } from '../addon.js';
import { cudaContext, cudaStatus } from './context.js';
import { captureGraph } from './graph.js';
import { profileReport } from './profile.js';
import { raiseIndexErrors } from './index_errors.js';

export const cuda = {
  /** True when a GPU (or, with KESTREL_CUDA_EMULATE=1, the emulator) can run the 'cuda' backend. */
  isAvailable(): boolean {
    return cudaStatus().usable;
  },
  /** The device's name, e.g. 'NVIDIA H200'. */
  deviceName(): string {
    return cudaContext().device.name;
  },
  /** Waits until all queued GPU work has finished (for timing; reads wait by themselves); reports a bad index met meanwhile. */
  synchronize(): void {
    cudaContext().addon.cudaSync();
    raiseIndexErrors();
  },
  /** The caching allocator's view: bytes allocated to tensors, reserved from the driver, and their peaks. */
  memoryStats(): CudaMemStats {
    return cudaContext().addon.cudaMemStats();
  },
  resetPeakMemoryStats(): void {
    cudaContext().addon.cudaResetPeak();
  },
  /** With KESTREL_CUDA_PROFILE=1: device milliseconds per kernel since the last call (see profile.ts). */
  profile: profileReport,
  /** Records the kernels fn queues into a replayable CUDA graph (see graph.ts). */
  captureGraph,
  /** Returns cached, unused blocks to the driver. */
  emptyCache(): void {
    cudaContext().addon.cudaEmptyCache();
  },
};
