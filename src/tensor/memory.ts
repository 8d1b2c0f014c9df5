// Exact storage accounting by tag, with peaks. Every Storage reports here when it is created,
// retagged or released, so memory.stats() is what is held right now, never an estimate.

export type MemoryTag = 'param' | 'grad' | 'optimizer' | 'activation' | 'other';
export const MEMORY_TAGS: readonly MemoryTag[] = ['param', 'grad', 'optimizer', 'activation', 'other'];

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
const current = zero();
const peak = zero();
let live = 0;
const tagStack: MemoryTag[] = [];

export function countAlloc(bytes: number, tag: MemoryTag): void {
  current[tag] += bytes;
  current.total += bytes;
  live++;
  if (current[tag] > peak[tag]) peak[tag] = current[tag];
  if (current.total > peak.total) peak.total = current.total;
}

export function countFree(bytes: number, tag: MemoryTag): void {
  current[tag] -= bytes;
  current.total -= bytes;
  live--;
}

export function countRetag(bytes: number, from: MemoryTag, to: MemoryTag): void {
  current[from] -= bytes;
  current[to] += bytes;
  if (current[to] > peak[to]) peak[to] = current[to];
}

/** The tag new storages get: the innermost withTag() scope, else the caller's default. */
export const currentTag = (fallback: MemoryTag): MemoryTag => tagStack[tagStack.length - 1] ?? fallback;

export const memory = {
  stats(): MemoryStats {
    return { current: { ...current }, peak: { ...peak }, storages: live };
  },
  /** Starts a new peak window at the current values. */
  resetPeak(): void {
    Object.assign(peak, current);
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
