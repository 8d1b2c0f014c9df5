// The m best entries of a score row, best first, in exactly the order a stable descending sort of
// all V indices gives (ties: lower index first), without sorting all V: a min-heap of m indices
// over one pass, O(V log m). Sampling's top-k/top-p and the top logprobs need only a short prefix
// of that order, and sorting 49152 indices per row per step cost ~35 ms. A prefix longer than V/16
// sorts them all.

/** a ranks above b: larger score, or the same score and a lower index (a stable sort's order) */
function above(s: ArrayLike<number>, a: number, b: number): boolean {
  return s[a] > s[b] || (s[a] === s[b] && a < b);
}

/** Restores the heap (worst entry at the root) below position i. */
function siftDown(s: ArrayLike<number>, heap: Int32Array, n: number, i: number): void {
  for (;;) {
    const l = 2 * i + 1;
    if (l >= n) return;
    const r = l + 1;
    const worse = r < n && above(s, heap[l], heap[r]) ? r : l;
    if (!above(s, heap[i], heap[worse])) return;
    [heap[i], heap[worse]] = [heap[worse], heap[i]];
    i = worse;
  }
}

/**
 * The indices of the m largest scores, best first; equal to the first m of
 * `Array.from(s.keys()).sort((a, b) => s[b] - s[a])` (V8's sort is stable). With NaN scores the order is
 * unspecified, as that sort's is (its comparator is then inconsistent); the samplers never pass NaN.
 * @example topIndices(Float32Array.from([1, 3, 3, 2]), 2) // [1, 2]
 */
export function topIndices(s: ArrayLike<number>, m: number): number[] {
  const V = s.length;
  m = Math.max(0, Math.min(m, V));
  if (m === 0) return [];
  // a long prefix: one sort of all V costs less than the heap's V log m comparisons in JS
  if (m * 16 > V) {
    const all: number[] = [];
    for (let i = 0; i < V; i++) all.push(i);
    all.sort((a, b) => s[b] - s[a]);
    return m < V ? all.slice(0, m) : all;
  }
  const heap = new Int32Array(m);
  let n = 0;
  for (let i = 0; i < V; i++) {
    if (n < m) {
      // sift up: the new entry rises while it ranks below its parent
      let c = n++;
      heap[c] = i;
      while (c > 0) {
        const p = (c - 1) >> 1;
        if (!above(s, heap[p], heap[c])) break;
        [heap[p], heap[c]] = [heap[c], heap[p]];
        c = p;
      }
    } else if (above(s, i, heap[0])) {
      heap[0] = i;
      siftDown(s, heap, m, 0);
    }
  }
  return Array.from(heap.subarray(0, n)).sort((a, b) => (above(s, a, b) ? -1 : 1));
}
