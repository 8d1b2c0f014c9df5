// The optimizer base: parameter groups with per-group hyper-parameters, state tensors counted
// under the 'optimizer' memory tag, zeroGrad, and a state dict for checkpoints.
import { zerosLike } from '../ops/creation.js';
import { memory } from '../tensor/memory.js';
import { keep, tidy } from '../tensor/scope.js';
import { to } from '../ops/elementwise.js';
import { clone, reshape } from '../ops/view.js';
import { shapeStr } from '../tensor/layout.js';
import type { Tensor } from '../tensor/tensor.js';

export interface ParamGroup<H> {
  params: Tensor[];
  /** group overrides of the optimizer's defaults */
  options?: Partial<H>;
}

export abstract class Optimizer<H extends { lr: number }> {
  readonly groups: { params: Tensor[]; options: H }[];
  /** per-parameter state tensors, by name (e.g. exp_avg) */
  protected readonly state = new Map<Tensor, Record<string, Tensor>>();
  /** optimizer steps taken */
  stepCount = 0;
  /** each parameter's group, for stepParam */
  private readonly groupIndex = new Map<Tensor, number>();

  constructor(params: Tensor[] | ParamGroup<H>[], readonly defaults: H) {
    const groups: ParamGroup<H>[] = params.length && !('params' in params[0]) ? [{ params: params as Tensor[] }] : (params as ParamGroup<H>[]);
    this.groups = groups.map((g) => ({ params: g.params, options: { ...defaults, ...g.options } }));
    this.groups.forEach((g, i) => {
      for (const p of g.params) {
        if (this.groupIndex.has(p)) throw new Error('optimizer: a parameter appears in two groups');
        this.groupIndex.set(p, i);
      }
    });
  }

  /** A zero state tensor like p, allocated once and counted as optimizer memory. */
  protected stateOf(p: Tensor, names: readonly string[]): Record<string, Tensor> {
    let s = this.state.get(p);
    if (!s) {
      s = memory.withTag('optimizer', () => Object.fromEntries(names.map((n) => [n, keep(zerosLike(p, { dtype: 'float32' }))])));
      this.state.set(p, s);
    }
    return s;
  }

  /** Applies one update to every parameter with a gradient. */
  step(): void {
    this.beginStep();
    for (const g of this.groups) for (const p of g.params) if (p.grad) this.update(p, p.grad, g.options);
  }

  /**
   * Counts one optimizer step without updating anything: the first half of step() for callers
   * that then update parameters one by one with stepParam() (optimizer in backward). AdamW's
   * bias correction reads the count, so it must run once per step, before the first stepParam.
   */
  beginStep(): void {
    this.stepCount++;
  }

  /**
   * Updates one parameter from its .grad with its group's hyper-parameters, exactly as step()
   * would (same kernels, same arithmetic); a parameter without a gradient is left alone.
   * @example opt.beginStep(); for (const p of params) opt.stepParam(p)
   */
  stepParam(p: Tensor): void {
    const i = this.groupIndex.get(p);
    if (i === undefined) throw new Error(`optimizer stepParam: the tensor ${p.name ? `'${p.name}' ` : ''}of shape ${shapeStr(p.shape)} is not one of this optimizer's parameters`);
    if (p.grad) this.update(p, p.grad, this.groups[i].options);
  }

  protected abstract update(p: Tensor, grad: Tensor, h: H): void;

  zeroGrad(): void {
    for (const g of this.groups) for (const p of g.params) p.zeroGrad();
  }

  /** Sets the learning rate of every group (schedulers call this). */
  setLr(lr: number | ((group: number) => number)): void {
    this.groups.forEach((g, i) => (g.options.lr = typeof lr === 'number' ? lr : lr(i)));
  }

  /** State tensors by parameter index (in group order), for checkpoints. */
  stateDict(): { step: number; state: Record<string, Tensor>[] } {
    const all = this.groups.flatMap((g) => g.params);
    return { step: this.stepCount, state: all.map((p) => this.state.get(p) ?? {}) };
  }

  /** Restores stateDict() output (copies into fresh tensors owned by the optimizer). */
  loadStateDict(sd: { step: number; state: Record<string, Tensor>[] }): void {
    const all = this.groups.flatMap((g) => g.params);
    if (sd.state.length !== all.length) throw new Error(`optimizer loadStateDict: ${sd.state.length} entries for ${all.length} parameters`);
    this.stepCount = sd.step;
    all.forEach((p, i) => {
      const entries = Object.entries(sd.state[i]);
      if (!entries.length) return;
      const s = this.stateOf(p, entries.map(([n]) => n));
      for (const [n, t] of entries) {
        if (t.numel !== p.numel) throw new Error(`optimizer loadStateDict: state '${n}' of parameter ${i} has ${t.numel} elements, the parameter ${p.numel}`);
        s[n].dispose();
        s[n] = memory.withTag('optimizer', () => keep(tidy(() => clone(to(reshape(t, [...p.shape]), 'float32')))));
        s[n].storage.tag = 'optimizer';
      }
    });
  }

  dispose(): void {
    for (const s of this.state.values()) for (const t of Object.values(s)) t.dispose();
    this.state.clear();
  }
}
