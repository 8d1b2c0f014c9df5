// CUDA graphs: the kernels a function queues, recorded once (stream capture) and replayed with
// one launch. Replays reuse the recorded addresses, so inputs are written into tensors that
// exist before the capture and results are read from tensors the capture returned; the memory
// the captured work allocates stays reserved for the graph (native/cuda/runtime.h) until
// dispose(). Nothing in the captured function may read back to the host or upload from it.
import { cudaContext } from './context.js';

export class CudaGraph {
  private id: number | null;
  constructor(id: number) {
    this.id = id;
  }
  /** Queues the recorded work again (asynchronous, like any launch). */
  replay(): void {
    if (this.id === null) throw new Error('CudaGraph: replay after dispose()');
    cudaContext().addon.cudaGraph(this.id, true);
  }
  /** Frees the graph and the memory reserved for its work. */
  dispose(): void {
    if (this.id === null) return;
    cudaContext().addon.cudaGraph(this.id, false);
    this.id = null;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * Records the kernels fn queues into a graph (fn runs once, but its kernels do not execute until
 * replay()); returns the graph and what fn returned.
 * @example const { graph, result: y } = captureGraph(() => step(x)); write x; graph.replay(); read y
 */
export function captureGraph<T>(fn: () => T): { graph: CudaGraph; result: T } {
  const { addon } = cudaContext();
  if (process.env.KESTREL_CUDA_SYNC === '1') throw new Error('captureGraph: KESTREL_CUDA_SYNC=1 synchronizes after every launch, which a capture cannot do');
  addon.cudaCapture('begin');
  let result: T;
  try {
    result = fn();
  } catch (e) {
    addon.cudaCapture('abort');
    throw e;
  }
  return { graph: new CudaGraph(addon.cudaCapture('end')), result };
}
