// Word and character error rates as jiwer computes them over a corpus: the summed Levenshtein
// distances (substitutions + deletions + insertions) over the summed reference lengths, after
// the same light normalisation for both sides (lower case, punctuation dropped, spaces collapsed).

/** Lower case, punctuation removed (apostrophes kept inside words), whitespace collapsed. */
export function normalizeTranscript(s: string): string {
  return s.toLowerCase().replace(/[^\p{L}\p{N}'\s]/gu, ' ').replace(/\s+/g, ' ').trim();
}

/** Levenshtein distance between two sequences (one row of the DP table at a time). */
export function editDistance<T>(a: readonly T[], b: readonly T[]): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length];
}

function errorRate(refs: readonly string[], hyps: readonly string[], split: (s: string) => string[], what: string): number {
  if (refs.length !== hyps.length) throw new Error(`${what}: ${refs.length} references but ${hyps.length} hypotheses`);
  let edits = 0;
  let total = 0;
  refs.forEach((r, i) => {
    const ref = split(normalizeTranscript(r));
    edits += editDistance(ref, split(normalizeTranscript(hyps[i])));
    total += ref.length;
  });
  if (total === 0) throw new Error(`${what}: the references are empty`);
  return edits / total;
}

const words = (s: string): string[] => (s ? s.split(' ') : []);

/**
 * @example wordErrorRate(['the cat sat'], ['the cat sat down'])  // 1 insertion / 3 words = 0.333
 */
export const wordErrorRate = (refs: readonly string[], hyps: readonly string[]): number => errorRate(refs, hyps, words, 'wordErrorRate');

/** Characters of the normalised text, spaces included (jiwer's cer). */
export const charErrorRate = (refs: readonly string[], hyps: readonly string[]): number => errorRate(refs, hyps, (s) => [...s], 'charErrorRate');
