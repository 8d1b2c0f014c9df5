// PEFT's modules_to_save (ModulesToSaveWrapper, peft 0.12): a module trained in full next to the
// adapters (embed_tokens, lm_head). The original stays frozen as `original_module`; each adapter
// name gets a trainable copy under `modules_to_save.<name>`, and the active one runs forward.
// Tied embeddings, as peft 0.12 does it: the tie is the original weight, so a tied LM head keeps
// reading the frozen original (`weight` below) while only the input embedding uses the trained copy.
import { noGrad } from '../tensor/grad_mode.js';
import { keep } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { clone } from '../ops/view.js';
import { Embedding, Linear } from '../nn/layers.js';
import { Module, Parameter } from '../nn/module.js';
import { ModuleDict } from './module_dict.js';

export type SavedModule = Linear | Embedding;

/** A trainable copy of a Linear or Embedding (same class, cloned weights). */
function trainableCopy(m: SavedModule): SavedModule {
  const backend = m.weight.backendName;
  const copy = m instanceof Embedding
    ? new Embedding(m.num, m.dim, { paddingIdx: m.paddingIdx, backend })
    : new Linear(m.inFeatures, m.outFeatures, { bias: m.bias !== null, backend });
  copy.dispose(); // the fresh initialisation, replaced by the original's values
  copy.weight = Parameter(keep(noGrad(() => clone(m.weight))));
  if (copy instanceof Linear && m instanceof Linear && m.bias) {
    const b = m.bias;
    copy.bias = Parameter(keep(noGrad(() => clone(b))));
  }
  return copy;
}

export class ModulesToSaveWrapper extends Module {
  original_module: SavedModule;
  modules_to_save = new ModuleDict<SavedModule>();
  /** the copy forward uses; null = the original (adapters disabled) */
  active: string | null = null;

  constructor(original: SavedModule) {
    super();
    if (!(original instanceof Linear || original instanceof Embedding))
      throw new Error(`modules_to_save: only Linear and Embedding modules can be saved, got ${(original as object).constructor.name}`);
    this.original_module = original;
    original.requiresGrad_(false);
  }

  /** Adds a trainable copy of the original under `name` (active if none was). */
  addAdapter(name: string): void {
    if (this.modules_to_save.has(name)) throw new Error(`modules_to_save: adapter '${name}' already exists`);
    this.modules_to_save.set(name, trainableCopy(this.original_module));
    this.active ??= name;
  }

  deleteAdapter(name: string): void {
    this.modules_to_save.delete(name).dispose();
    if (this.active === name) this.active = this.modules_to_save.keys()[0] ?? null;
  }

  get adapters(): string[] {
    return this.modules_to_save.keys();
  }

  /** The module forward runs: the active adapter's copy, or the original. */
  current(): SavedModule {
    return this.active !== null && this.modules_to_save.has(this.active) ? this.modules_to_save.get(this.active) : this.original_module;
  }

  forward(x: Tensor): Tensor {
    return this.current().forward(x);
  }

  /** The original (frozen) weight: what a tied LM head reads, as in peft 0.12. */
  get weight(): Tensor {
    return this.original_module.weight;
  }
}
