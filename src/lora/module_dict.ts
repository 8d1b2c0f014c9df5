// ModuleDict (torch.nn.ModuleDict): child modules by name, so PEFT's per-adapter keys
// (`q_proj.lora_A.default.weight`, `lm_head.modules_to_save.default.weight`) are state-dict keys.
import { Module } from '../nn/module.js';

export class ModuleDict<M extends Module> extends Module {
  /** Adds or replaces `name` (an identifier that does not shadow a Module property or method). */
  set(name: string, m: M): void {
    if (!/^[A-Za-z_][A-Za-z0-9_-]*$/.test(name) || (name in this && !this.has(name)))
      throw new Error(`ModuleDict: '${name}' cannot be a key (use a plain identifier that is not a Module property)`);
    Reflect.set(this, name, m);
  }

  has(name: string): boolean {
    return Object.hasOwn(this, name) && Reflect.get(this, name) instanceof Module;
  }

  get(name: string): M {
    if (!this.has(name)) throw new Error(`ModuleDict: no entry '${name}' (have ${this.keys().join(', ') || 'none'})`);
    return Reflect.get(this, name) as M;
  }

  /** Removes `name` and returns it (the caller disposes it). */
  delete(name: string): M {
    const m = this.get(name);
    Reflect.deleteProperty(this, name);
    return m;
  }

  keys(): string[] {
    return Object.keys(this).filter((k) => this.has(k));
  }
}
