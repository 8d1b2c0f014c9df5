// Batch-1 decoding without launch overhead: one decode step of a CausalLM on the GPU is recorded
// as a CUDA graph over fixed buffers (the token id, the position in a StaticKVCache) and replayed
// per token, so a step costs one launch instead of hundreds. Used by generate() on the cuda
// backend when the step has fixed shapes: batch 1 without padding, no mixture of experts
// (data-dependent routing), rotary tables that do not depend on the sequence length.
import { type CudaGraph, captureGraph } from '../backend/cuda/graph.js';
import { backendOf } from '../backend/index.js';
import { tensor } from '../ops/creation.js';
import { argmax } from '../ops/reduce.js';
import { reshape, select } from '../ops/view.js';
import { noGrad } from '../tensor/grad_mode.js';
import { keep, tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { CausalLM, type LanguageModel } from '../models/causal_lm.js';
import { StaticKVCache } from '../models/static_kv_cache.js';
import type { KVCache } from '../models/kv_cache.js';

/** Why the graph path cannot decode this model here, or null when it can. */
export function graphDecodeBlocker(model: LanguageModel, backend: string, batch: number, padded: boolean): string | null {
  if (process.env.KESTREL_CUDA_GRAPHS === '0') return 'KESTREL_CUDA_GRAPHS=0';
  if (backend !== 'cuda') return 'not on the cuda backend';
  if (process.env.KESTREL_CUDA_SYNC === '1') return 'KESTREL_CUDA_SYNC=1';
  return fixedStepBlocker(model, batch, padded);
}

/**
 * Why one decode step of this model cannot be recorded once and replayed (a CUDA or CPU graph), or
 * null: the step must run the same kernels on every token.
 */
export function fixedStepBlocker(model: LanguageModel, batch: number, padded: boolean): string | null {
  if (!(model instanceof CausalLM)) return 'not a Llama-family CausalLM';
  if (batch !== 1 || padded) return 'batch > 1 or padded';
  const c = model.config;
  if (c.moe) return 'mixture of experts (data-dependent routing)';
  if (c.ropeScaling && (c.ropeScaling.type === 'dynamic' || c.ropeScaling.type === 'longrope')) return `${c.ropeScaling.type} rope scaling depends on the length`;
  return null;
}

/**
 * One batch-1 decode step through the model's forward: the next token's logits [V] and their argmax
 * [1] (what a graph records and a replay rewrites).
 */
export function nextTokenLogits(model: CausalLM, ids: Tensor, positions: Tensor, cache: KVCache): [Tensor, Tensor] {
  return noGrad(() => tidy(() => {
    const out = model.forward({ inputIds: ids, positionIds: positions, cache, lastLogitsOnly: true });
    const logits = reshape(select(out.logits!, 1, 0), [-1]); // [V]
    return [logits, argmax(logits, -1)];
  }));
}

/** One model's recorded decode step over a StaticKVCache. */
export class GraphDecoder {
  /** graphs recorded in this process (for tests and diagnostics) */
  static captures = 0;
  private readonly ids: Tensor;
  private graph: CudaGraph | null = null;
  private logits: Tensor | null = null;
  private next: Tensor | null = null;

  constructor(private readonly model: CausalLM, readonly cache: StaticKVCache) {
    this.ids = keep(tensor([[0]], { dtype: 'int64', backend: 'cuda' }));
  }

  /** Runs the step for `token` at `position`; returns the next token's logits [V] (float32, valid until the next step) and its argmax [1]. */
  step(token: number, position: number): { logits: Tensor; argmax: Tensor } {
    tidy(() => backendOf(this.ids).kernels.copy(tensor([[token]], { dtype: 'int64', backend: 'cuda' }), this.ids));
    this.cache.setPosition(position);
    if (!this.graph) this.capture(position);
    this.graph!.replay();
    this.cache.length = position + 1;
    return { logits: this.logits!, argmax: this.next! };
  }

  private capture(position: number): void {
    this.cache.devicePositions = true;
    const { graph, result } = captureGraph(() => tidy(() => nextTokenLogits(this.model, this.ids, reshape(this.cache.position, [1, 1]), this.cache)));
    this.cache.length = position; // the capture ran the host side of one step (advance), not its kernels
    GraphDecoder.captures++;
    [this.logits, this.next] = result.map((t) => keep(t));
    this.graph = graph;
  }

  dispose(): void {
    this.graph?.dispose();
    for (const t of [this.ids, this.logits, this.next]) t?.dispose();
    this.graph = null;
  }
}
