// Speculative decoding (Leviathan et al. 2023; Chen et al. 2023), greedy: a small draft model
// proposes k tokens one at a time; the target model scores all of them in one forward over k + 1
// positions with its KV cache; the longest prefix of drafts equal to the target's own greedy picks
// is kept, plus the target's token at the first disagreement (or after the last draft), so every
// round yields 1..k+1 tokens for one target forward. Both caches are rolled back to the kept
// prefix. The output is the target's plain greedy output: each kept token is the target's argmax
// given the same prefix (up to float rounding between a k+1-row and a 1-row forward on near-ties).
import type { KvCacheDtype } from './generate.js';
import { tensor } from '../ops/creation.js';
import { toFloat32Array } from '../ops/transfer.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { shapeStr } from '../tensor/layout.js';
import type { LanguageModel } from '../models/causal_lm.js';
import { KVCache } from '../models/kv_cache.js';
import { argmax } from './sampling.js';

export interface SpeculativeOptions {
  /** a model sharing the target's tokenizer (vocabulary ids), much cheaper per token */
  draftModel: LanguageModel;
  /** drafts per round, k (default 4) */
  numDraftTokens?: number;
  maxNewTokens: number;
  eos: number[];
  /** called with each round's kept tokens, in order */
  onTokens?: (tokens: number[]) => void;
  /** both caches' dtype (GenerateOptions.kvCacheDtype; default the keys') */
  kvCacheDtype?: KvCacheDtype;
}

export interface SpeculativeStats {
  /** draft tokens proposed and kept; acceptanceRate = accepted / drafted */
  drafted: number;
  accepted: number;
  acceptanceRate: number;
  /** target forwards after the prompt (rounds) and tokens generated */
  targetForwards: number;
  newTokens: number;
}

/** The argmax of every position's logits of `ids` (appended after the cache's contents); vocab[0] gets V. */
function greedyPicks(model: LanguageModel, cache: KVCache, ids: number[], lastOnly: boolean, vocab?: number[]): number[] {
  return noGrad(() => tidy(() => {
    const logits = model.forward({ inputIds: tensor([ids], { dtype: 'int64', backend: backendOf(model) }), cache, lastLogitsOnly: lastOnly }).logits!;
    const flat = toFloat32Array(logits);
    const rows = lastOnly ? 1 : ids.length;
    const V = flat.length / rows;
    if (vocab && vocab.length < 2) vocab.push(V);
    return Array.from({ length: rows }, (_, r) => argmax(flat.subarray(r * V, (r + 1) * V)));
  }));
}

const backendOf = (m: LanguageModel): string => m.parameters()[0]?.backendName ?? 'cpu';

/** Drops the cache's entries past `length` (they are overwritten by the next update). */
function rollback(cache: KVCache, length: number): void {
  if (length > cache.length) throw new Error(`speculative decoding: cannot roll a cache of ${cache.length} forward to ${length}`);
  cache.length = length;
}

function newCache(m: LanguageModel, length: number, backend: string, dtype: KvCacheDtype | undefined): KVCache {
  const c = m.config;
  return new KVCache(c.numLayers, 1, c.numKvHeads, length, c.headDim, { backend, dtype });
}

/**
 * Greedy generation of target with draft proposals; returns the new tokens and the acceptance.
 * @example const { tokens, stats } = speculativeDecode(big, [prompt], { draftModel: small, maxNewTokens: 64, eos: [2] })
 */
export function speculativeDecode(target: LanguageModel, prompt: number[], o: SpeculativeOptions): { tokens: number[]; stats: SpeculativeStats } {
  const k = o.numDraftTokens ?? 4;
  if (!Number.isInteger(k) || k < 1) throw new Error(`speculative decoding: numDraftTokens must be a positive integer, got ${k}`);
  if (!prompt.length) throw new Error('speculative decoding: the prompt is empty');
  const draft = o.draftModel;
  const backend = backendOf(target);
  const room = prompt.length + o.maxNewTokens + k + 1;
  const [tc, dc] = [newCache(target, room, backend, o.kvCacheDtype), newCache(draft, room, backendOf(draft), o.kvCacheDtype)];
  const seq = [...prompt];
  const out: number[] = [];
  const stats: SpeculativeStats = { drafted: 0, accepted: 0, acceptanceRate: 0, targetForwards: 0, newTokens: 0 };
  const emit = (tokens: number[]): boolean => {
    const kept: number[] = [];
    for (const t of tokens) {
      if (out.length >= o.maxNewTokens) break;
      kept.push(t);
      out.push(t);
      seq.push(t);
      if (o.eos.includes(t)) break;
    }
    if (kept.length) o.onTokens?.(kept);
    return out.length >= o.maxNewTokens || o.eos.includes(out[out.length - 1]);
  };
  try {
    // invariant from here on: both caches hold every token of seq but the last
    const vocab: number[] = [];
    const first = greedyPicks(target, tc, seq, true, vocab)[0]; // the cache now holds the prompt: all of seq but `first`
    let done = o.maxNewTokens === 0 || emit([first]);
    while (!done) {
      // draft k tokens, feeding the draft whatever of seq it has not seen yet first
      const drafts: number[] = [];
      let feed = seq.slice(dc.length);
      for (let i = 0; i < k; i++) {
        drafts.push(greedyPicks(draft, dc, feed, true, vocab)[0]);
        feed = [drafts[i]];
      }
      if (vocab[1] !== vocab[0]) throw new Error(`speculative decoding: the draft's vocabulary (${vocab[1]} logits) differs from the target's (${vocab[0]}); they must share a tokenizer`);
      // verify: the target's picks after seq's last token and after each draft
      const base = tc.length;
      const picks = greedyPicks(target, tc, [seq[seq.length - 1], ...drafts], false);
      let m = 0;
      while (m < k && drafts[m] === picks[m]) m++;
      stats.targetForwards++;
      stats.drafted += k;
      stats.accepted += m;
      // kept: drafts[0..m) and the target's pick after them
      done = emit([...drafts.slice(0, m), picks[m]]);
      rollback(tc, Math.min(base + 1 + m, seq.length - 1));
      rollback(dc, Math.min(dc.length, seq.length - 1));
    }
  } finally {
    tc.dispose();
    dc.dispose();
  }
  stats.newTokens = out.length;
  stats.acceptanceRate = stats.drafted ? stats.accepted / stats.drafted : 0;
  return { tokens: out, stats };
}

/** Checks that speculative decoding applies: one row, greedy, no penalties or processors. */
export function checkSpeculative(inputIds: Tensor, why: { sampling: boolean; penalized: boolean; processor: boolean }): void {
  if (inputIds.ndim !== 2 || inputIds.shape[0] !== 1) throw new Error(`generate: speculative decoding (draftModel) takes one sequence [1, T], got ${shapeStr(inputIds.shape)}`);
  if (why.sampling) throw new Error('generate: speculative decoding (draftModel) is greedy; sampling (temperature > 0, doSample) is not supported with it');
  if (why.penalized || why.processor) throw new Error('generate: speculative decoding (draftModel) does not combine with penalties, logitsProcessor or onScores');
}
