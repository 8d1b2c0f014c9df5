// LoRA (Hu et al. 2021) around any frozen Linear-shaped layer (a Linear, or a 4-bit QuantLinear for
// QLoRA): y = base(x) + s B(A(dropout(x))), s = alpha / r (alpha / sqrt(r) for rsLoRA), computed by the
// fused op in fused_lora.ts. Adapters are held by name like PEFT's LoraLayer (lora_A.<name>,
// lora_B.<name>, 'default' first), one of them active, or none (base only).
import { matmul } from '../ops/matmul.js';
import { add, mul } from '../ops/elementwise.js';
import { eye, zeros } from '../ops/creation.js';
import { transpose } from '../ops/view.js';
import { backendOf } from '../backend/index.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import { Tensor } from '../tensor/tensor.js';
import { normal_, uniform } from '../nn/init.js';
import { type FrozenLinear, Linear } from '../nn/layers.js';
import { Module, Parameter } from '../nn/module.js';
import { type LoraCallOptions, type LoraProjection, loraLinear } from './fused_lora.js';
import { ModuleDict } from './module_dict.js';

export interface LoraOptions {
  r: number;
  alpha: number;
  dropout?: number;
  useRslora?: boolean;
  /** B zero and A kaiming-uniform (PEFT's default), or A gaussian with std 1/r */
  init?: 'default' | 'gaussian';
}

/** What LoRA can wrap: a frozen module with the two weight products (Linear, QuantLinear). */
export type LoraBase = Module & FrozenLinear & { forward(x: Tensor): Tensor };

/** A Linear-shaped weight holder: lora_A [r, in] and lora_B [out, r] are plain matrices. */
export class Matrix extends Module {
  weight: Tensor;
  constructor(w: Tensor) {
    super();
    this.weight = Parameter(w);
  }
}

export class LoraLinear extends Module {
  base_layer: LoraBase;
  lora_A = new ModuleDict<Matrix>();
  lora_B = new ModuleDict<Matrix>();
  /** the adapter forward uses; null = adapters disabled (base only) */
  active: string | null = null;
  private readonly options = new Map<string, LoraOptions>();

  constructor(base: LoraBase, opts: LoraOptions, name = 'default') {
    super();
    this.base_layer = base;
    base.requiresGrad_(false);
    this.addAdapter(name, opts);
  }

  get inFeatures(): number {
    return this.base_layer.inFeatures;
  }
  get outFeatures(): number {
    return this.base_layer.outFeatures;
  }
  /** adapter names in the order they were added */
  get adapters(): string[] {
    return [...this.options.keys()];
  }

  /** Adds a freshly initialised adapter (it becomes active only if none was). */
  addAdapter(name: string, opts: LoraOptions): void {
    const base = this.base_layer;
    const { r } = opts;
    if (this.options.has(name)) throw new Error(`LoRA: adapter '${name}' already exists on this layer`);
    if (!Number.isInteger(r) || r <= 0 || r > Math.min(base.inFeatures, base.outFeatures))
      throw new Error(`LoRA: rank ${r} must be a positive integer no larger than the layer (${base.outFeatures} x ${base.inFeatures})`);
    if (!(typeof opts.alpha === 'number' && Number.isFinite(opts.alpha))) throw new Error(`LoRA: lora_alpha must be a finite number, got ${opts.alpha}`);
    const p = opts.dropout ?? 0;
    if (!(p >= 0 && p < 1)) throw new Error(`LoRA: dropout must be in [0, 1), got ${p}`);
    const backend = this.backendName();
    // PEFT: A ~ kaiming_uniform(a = sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B = 0; gaussian: A ~ N(0, 1/r^2)
    const a = uniform([r, base.inFeatures], 1 / Math.sqrt(base.inFeatures), { backend });
    if (opts.init === 'gaussian') normal_(a, 1 / r);
    this.lora_A.set(name, new Matrix(a));
    this.lora_B.set(name, new Matrix(zeros([base.outFeatures, r], { backend })));
    this.options.set(name, opts);
    this.active ??= name;
  }

  /** Removes an adapter and frees its weights; the layer falls back to its first remaining one. */
  deleteAdapter(name: string): void {
    this.adapterOptions(name);
    this.lora_A.delete(name).dispose();
    this.lora_B.delete(name).dispose();
    this.options.delete(name);
    if (this.active === name) this.active = this.adapters[0] ?? null;
  }

  /** The options an adapter was made with. */
  adapterOptions(name: string): LoraOptions {
    const o = this.options.get(name);
    if (!o) throw new Error(`LoRA: no adapter '${name}' (this layer has ${this.adapters.map((a) => `'${a}'`).join(', ') || 'none'})`);
    return o;
  }

  scaling(name = this.active ?? 'default'): number {
    const { r, alpha, useRslora } = this.adapterOptions(name);
    return useRslora ? alpha / Math.sqrt(r) : alpha / r;
  }

  /**
   * The active adapter as the fused op's projection (its dropout only in training mode), or null
   * when adapters are disabled.
   */
  projection(): LoraProjection | null {
    const n = this.active;
    if (n === null) return null;
    const o = this.adapterOptions(n);
    const dropout = this.training ? (o.dropout ?? 0) : 0;
    return { base: this.base_layer, A: this.lora_A.get(n).weight, B: this.lora_B.get(n).weight, scaling: this.scaling(n), dropout };
  }

  /** `recompute` (see LoraCallOptions) lets backward rebuild x instead of keeping it. */
  forward(x: Tensor, opts: Pick<LoraCallOptions, 'recompute'> = {}): Tensor {
    const p = this.projection();
    return p ? loraLinear(x, p, opts) : this.base_layer.forward(x);
  }

  /** W + s B A of the active adapter as a new plain Linear (the adapter folded into the base). */
  merged(): Linear {
    const base = this.base_layer;
    const n = this.active;
    const out = new Linear(base.inFeatures, base.outFeatures, { bias: base.bias !== null, backend: this.backendName() });
    noGrad(() => tidy(() => {
      // a plain Linear's weight as is; any other base (4-bit) through its own product: I Wᵀ = Wᵀ
      const w = base instanceof Linear ? base.weight : transpose(base.applyWeight(eye(base.inFeatures, base.inFeatures, { backend: this.backendName() })));
      const delta = n === null ? null : mul(matmul(this.lora_B.get(n).weight, this.lora_A.get(n).weight), this.scaling(n));
      backendOf(out.weight).kernels.copy(delta ? add(w, delta) : w, out.weight);
      if (base.bias && out.bias) backendOf(out.bias).kernels.copy(base.bias, out.bias);
    }));
    if (base instanceof Linear && base.weight.dtype !== 'float32') out.to(base.weight.dtype);
    out.requiresGrad_(false);
    return out;
  }

  private backendName(): string {
    const t = Object.values(this.base_layer).find((v): v is Tensor => v instanceof Tensor);
    if (!t) throw new Error('LoRA: the base layer holds no tensor to take a backend from');
    return t.backendName;
  }
}
