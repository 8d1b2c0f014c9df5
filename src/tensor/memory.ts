// Exact storage accounting by tag and device, with peaks. Every Storage reports here when it is
// created, retagged or released, so memory.stats() is what is held right now, never an estimate.
// Host memory (the cpu and ref backends) and device memory (cuda) are counted apart; stats()
// without a device sums them. A backend with a caching allocator registers it here, so stats()
// also shows the bytes it keeps for reuse (`cached`, in no tag) and emptyCache() returns them.

import type { MemoryCounts, MemoryTag } from './memory_types.js';

export type { MemoryCounts, MemoryTag };
export const MEMORY_TAGS: readonly MemoryTag[] = ['param', 'grad', 'optimizer', 'activation', 'other'];

/** Where a storage's bytes live: host RAM (cpu, ref) or GPU memory (cuda). */
export type MemoryDevice = 'cpu' | 'cuda';

export interface MemoryStats {
  current: MemoryCounts;
  /** peak of each counter since the last resetPeak() (each tag's own peak; total's own peak) */
  peak: MemoryCounts;
  /** every tag at the moment the total peaked (their sum is peak.total): what the peak was made of */
  atPeak: MemoryCounts;
  /** number of live storages */
  storages: number;
  /** bytes the caching allocator keeps for reuse: freed by storages, held by none, in no tag */
  cached: number;
  /** bytes the allocator holds from the OS / driver: live blocks (rounded up to size classes) plus cached */
  reserved: number;
  /** blocks the allocator has obtained from the OS / driver since the process began; flat once a loop reaches its steady state */
  osAllocs: number;
  /** the process's page faults since it began (getrusage; minor = first touches of fresh pages), whatever the device */
  pageFaults: { minor: number; major: number };
}

/** What a device's caching allocator reports (see registerAllocator). */
export interface AllocatorCounts {
  cached: number;
  reserved: number;
  osAllocs: number;
}

/** A device's caching allocator, as its backend registers it. */
export interface CachingAllocator {
  counts(): AllocatorCounts;
  /** returns every cached block to the OS / driver */
  emptyCache(): void;
}

const zero = (): MemoryCounts => ({ total: 0, param: 0, grad: 0, optimizer: 0, activation: 0, other: 0 });

class Counter {
  readonly current = zero();
  readonly peak = zero();
  readonly atPeak = zero();
  live = 0;
  add(bytes: number, tag: MemoryTag): void {
    this.current[tag] += bytes;
    this.current.total += bytes;
    if (this.current[tag] > this.peak[tag]) this.peak[tag] = this.current[tag];
    if (this.current.total > this.peak.total) {
      this.peak.total = this.current.total;
      Object.assign(this.atPeak, this.current);
    }
  }
  snapshot(): Pick<MemoryStats, 'current' | 'peak' | 'atPeak' | 'storages'> {
    return { current: { ...this.current }, peak: { ...this.peak }, atPeak: { ...this.atPeak }, storages: this.live };
  }
  resetPeak(): void {
    Object.assign(this.peak, this.current);
    Object.assign(this.atPeak, this.current);
  }
}

const all = new Counter();
const byDevice: Record<MemoryDevice, Counter> = { cpu: new Counter(), cuda: new Counter() };
const tagStack: MemoryTag[] = [];
const allocators = new Map<MemoryDevice, CachingAllocator>();

/** Called by a backend with a caching allocator (cpu, cuda) when it is created; one per device. */
export function registerAllocator(device: MemoryDevice, allocator: CachingAllocator): void {
  allocators.set(device, allocator);
}

function allocatorCounts(device?: MemoryDevice): AllocatorCounts {
  const sum: AllocatorCounts = { cached: 0, reserved: 0, osAllocs: 0 };
  for (const [d, a] of allocators) {
    if (device !== undefined && d !== device) continue;
    const c = a.counts();
    sum.cached += c.cached;
    sum.reserved += c.reserved;
    sum.osAllocs += c.osAllocs;
  }
  return sum;
}

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
  /**
   * Held bytes by tag, with peaks: on one device, or (no argument) on all of them together; with
   * the caching allocators' cached bytes and OS allocations, and the process's page faults.
   * @example const { current, cached, osAllocs } = k.memory.stats('cpu')
   */
  stats(device?: MemoryDevice): MemoryStats {
    const usage = process.resourceUsage();
    return {
      ...(device ? byDevice[device] : all).snapshot(),
      ...allocatorCounts(device),
      pageFaults: { minor: usage.minorPageFault, major: usage.majorPageFault },
    };
  },
  /**
   * Returns the blocks the caching allocators keep for reuse to the OS / driver (all devices, or
   * one), as torch.cuda.empty_cache() does; live tensors are untouched.
   * @example k.memory.emptyCache(); k.memory.stats('cpu').cached === 0
   */
  emptyCache(device?: MemoryDevice): void {
    for (const [d, a] of allocators) if (device === undefined || d === device) a.emptyCache();
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
