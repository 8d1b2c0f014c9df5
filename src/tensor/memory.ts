// Exact storage accounting by tag and device, with peaks. Every Storage reports here when it is
// created, retagged or released, so memory.stats() is what is held right now, never an estimate.
// Host memory (the cpu and ref backends) and device memory (cuda) are counted apart; stats()
// without a device sums them.

export type MemoryTag = 'param' | 'grad' | 'optimizer' | 'activation' | 'other';
export const MEMORY_TAGS: readonly MemoryTag[] = ['param', 'grad', 'optimizer', 'activation', 'other'];

/** Where a storage's bytes live: host RAM (cpu, ref) or GPU memory (cuda). */
export type MemoryDevice = 'cpu' | 'cuda';

export interface MemoryCounts {
  total: number;
  param: number;
  grad: number;
  optimizer: number;
  activation: number;
  other: number;
}

export interface MemoryStats {
  current: MemoryCounts;
  /** peak of each counter since the last resetPeak() (each tag's own peak; total's own peak) */
  peak: MemoryCounts;
  /** number of live storages */
  storages: number;
}

const zero = (): MemoryCounts => ({ total: 0, param: 0, grad: 0, optimizer: 0, activation: 0, other: 0 });

class Counter {
  readonly current = zero();
  readonly peak = zero();
  live = 0;
  add(bytes: number, tag: MemoryTag): void {
    this.current[tag] += bytes;
    this.current.total += bytes;
    if (this.current[tag] > this.peak[tag]) this.peak[tag] = this.current[tag];
    if (this.current.total > this.peak.total) this.peak.total = this.current.total;
  }
  stats(): MemoryStats {
    return { current: { ...this.current }, peak: { ...this.peak }, storages: this.live };
  }
  resetPeak(): void {
    Object.assign(this.peak, this.current);
  }
}

const all = new Counter();
const byDevice: Record<MemoryDevice, Counter> = { cpu: new Counter(), cuda: new Counter() };
const tagStack: MemoryTag[] = [];

export function countAlloc(bytes: number, tag: MemoryTag, device: MemoryDevice): void {
  for (const c of [all, byDevice[device]]) {
    c.add(bytes, tag);
    c.live++;
  }
}

export function countFree(bytes: number, tag: MemoryTag, device: MemoryDevice): void {
  for (const c of [all, byDevice[device]]) {
    c.add(-bytes, tag);
    c.live--;
  }
}

export function countRetag(bytes: number, from: MemoryTag, to: MemoryTag, device: MemoryDevice): void {
  for (const c of [all, byDevice[device]]) {
    c.add(-bytes, from);
    c.add(bytes, to);
  }
}

/** The tag new storages get: the innermost withTag() scope, else the caller's default. */
export const currentTag = (fallback: MemoryTag): MemoryTag => tagStack[tagStack.length - 1] ?? fallback;

export const memory = {
  /** Held bytes by tag, with peaks: on one device, or (no argument) on all of them together. */
  stats(device?: MemoryDevice): MemoryStats {
    return (device ? byDevice[device] : all).stats();
  },
  /** Starts a new peak window at the current values (every device). */
  resetPeak(): void {
    all.resetPeak();
    for (const c of Object.values(byDevice)) c.resetPeak();
  },
  /** Runs fn with every storage it allocates tagged `tag` (e.g. 'optimizer' for optimizer state). */
  withTag<T>(tag: MemoryTag, fn: () => T): T {
    tagStack.push(tag);
    try {
      return fn();
    } finally {
      tagStack.pop();
    }
  },
};
