// Preference files -> tokenized pairs (train and a seeded eval split). Everything is read and
// encoded before training starts, so a bad record stops the run with file:line (or is counted,
// with skipBadLines): a missing field, a conversation that does not end with the assistant, a
// prompt that leaves no room for the completion in seqLen, a token id outside the vocabulary.
import { BadLines, DataError, type Where } from '../data/errors.js';
import { type Example, checkTokenIds } from '../data/example.js';
import { listDataFiles, readRecords } from '../data/readers.js';
import { STREAM_SPLIT, SeededRandom, permutation } from '../data/shuffle.js';
import { IGNORE_INDEX } from '../data/example.js';
import { type CompletionEncoderOptions, completionEncoder } from './encode.js';
import { PairDataset, type PairExample } from './pair_dataset.js';
import { pairRecord } from './records.js';

export interface LoadPreferenceOptions extends CompletionEncoderOptions {
  /** the longest row: longer prompt+completion sequences lose their end (the completion's tail) */
  seqLen: number;
  /** the padding id of the batches (the model's pad_token_id for a reward model) */
  padId: number;
  seed?: number;
  /** held-out share of the pairs, in [0, 1) */
  evalFraction?: number;
  skipBadLines?: boolean;
  vocabSize?: number;
}

export interface LoadedPairs {
  train: PairDataset;
  eval: PairDataset | null;
  badLines: number;
  badLineMessages: string[];
  /** pairs whose rows were cut to seqLen */
  truncated: number;
}

/** Cuts a row to seqLen; the completion must keep at least one token. */
function truncate(ex: Example, seqLen: number, where: Where, which: string): { ex: Example; cut: boolean } {
  if (ex.inputIds.length <= seqLen) return { ex, cut: false };
  const labels = ex.labels.slice(0, seqLen);
  // the model scores labels[t] from position t - 1: a completion token at position 0 scores nothing
  if (labels.slice(1).every((l) => l === IGNORE_INDEX))
    throw new DataError(where, `the prompt fills seqLen ${seqLen} (${ex.inputIds.length} tokens with the ${which} completion): nothing of the completion is left; raise --seq-len or shorten the prompt`);
  return { ex: { inputIds: ex.inputIds.slice(0, seqLen), labels }, cut: true };
}

/**
 * Reads {prompt, chosen, rejected} records (strings, messages, HH-RLHF transcripts) from JSONL,
 * JSON or Parquet files and encodes them.
 * @example const { train, eval } = await loadPreferenceData(['pairs.jsonl'], { tokenizer, seqLen: 512, padId: 0, evalFraction: 0.1 })
 */
export async function loadPreferenceData(paths: string | readonly string[], o: LoadPreferenceOptions): Promise<LoadedPairs> {
  if (!(Number.isInteger(o.seqLen) && o.seqLen >= 2)) throw new RangeError(`loadPreferenceData: seqLen must be an integer >= 2, got ${o.seqLen}`);
  const frac = o.evalFraction ?? 0;
  if (!(frac >= 0 && frac < 1)) throw new RangeError(`loadPreferenceData: evalFraction must be in [0, 1), got ${frac}`);
  const bad = new BadLines(o.skipBadLines === true);
  const encode = completionEncoder(o);
  const pairs: PairExample[] = [];
  let truncated = 0;
  for (const file of listDataFiles(paths)) {
    for await (const rec of readRecords(file, bad)) {
      const pair = bad.guard(() => {
        const [c, r] = encode(pairRecord(rec), rec.where);
        const chosen = truncate(c, o.seqLen, rec.where, 'chosen');
        const rejected = truncate(r, o.seqLen, rec.where, 'rejected');
        for (const ex of [chosen.ex, rejected.ex]) checkTokenIds(ex, rec.where, { vocabSize: o.vocabSize, tokenizer: true });
        if (chosen.cut || rejected.cut) truncated++;
        return { chosen: chosen.ex, rejected: rejected.ex };
      });
      if (pair) pairs.push(pair);
    }
  }
  if (pairs.length === 0) throw new Error(`loadPreferenceData: no usable pairs in ${[paths].flat().join(', ')}${bad.count ? ` (${bad.count} bad records; first: ${bad.messages[0]})` : ''}`);
  const seed = o.seed ?? 0;
  const nEval = Math.floor(pairs.length * frac);
  const perm = permutation(pairs.length, new SeededRandom(seed, STREAM_SPLIT));
  const pick = (from: number, to: number): PairExample[] => Array.from(perm.subarray(from, to)).sort((a, b) => a - b).map((i) => pairs[i]);
  return {
    train: new PairDataset(pick(nEval, pairs.length), o.padId, seed),
    eval: nEval > 0 ? new PairDataset(pick(0, nEval), o.padId, seed) : null,
    badLines: bad.count, badLineMessages: bad.messages, truncated,
  };
}
