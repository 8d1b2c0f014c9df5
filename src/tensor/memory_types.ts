// The memory counters' shapes, apart from the accounting itself so that code without Node (the
// Studio's web app, which draws them from metrics.jsonl) can name them.

export type MemoryTag = 'param' | 'grad' | 'optimizer' | 'activation' | 'other';

/** Bytes in total and by tag. */
export interface MemoryCounts {
  total: number;
  param: number;
  grad: number;
  optimizer: number;
  activation: number;
  other: number;
}
