// Preference files -> tokenized pairs (train and a seeded eval split). Everything is read and
// encoded before training starts, so a bad record stops the run with file:line (or is counted,
// with skipBadLines): a missing field, a conversation that does not end with the assistant, a
// prompt that leaves no room for the completion in seqLen, a token id outside the vocabulary.
import { BadLines, DataError, type Where } from '../data/errors.js';
import { type Example, checkTokenIds } from '../data/example.js';
import { type DataRecord, listDataFiles, readRecords } from '../data/readers.js';
import { STREAM_SPLIT, SeededRandom, permutation } from '../data/shuffle.js';
import { IGNORE_INDEX } from '../data/example.js';
import { type CompletionEncoderOptions, completionEncoder } from './encode.js';
import { PairDataset, type PairExample } from './pair_dataset.js';
import { pairRecord, unpairedRecord } from './records.js';

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

/** Reads every record of the files through `encode` (bad ones thrown or counted), then splits off eval. */
async function readSplit(paths: string | readonly string[], o: LoadPreferenceOptions, encode: (rec: DataRecord) => PairExample): Promise<LoadedPairs & { all: PairExample[] }> {
  if (!(Number.isInteger(o.seqLen) && o.seqLen >= 2)) throw new RangeError(`loadPreferenceData: seqLen must be an integer >= 2, got ${o.seqLen}`);
  const frac = o.evalFraction ?? 0;
  if (!(frac >= 0 && frac < 1)) throw new RangeError(`loadPreferenceData: evalFraction must be in [0, 1), got ${frac}`);
  const bad = new BadLines(o.skipBadLines === true);
  const pairs: PairExample[] = [];
  for (const file of listDataFiles(paths)) {
    for await (const rec of readRecords(file, bad)) {
      const pair = bad.guard(() => encode(rec));
      if (pair) pairs.push(pair);
    }
  }
  if (pairs.length === 0) throw new Error(`loadPreferenceData: no usable records in ${[paths].flat().join(', ')}${bad.count ? ` (${bad.count} bad records; first: ${bad.messages[0]})` : ''}`);
  const seed = o.seed ?? 0;
  const nEval = Math.floor(pairs.length * frac);
  const perm = permutation(pairs.length, new SeededRandom(seed, STREAM_SPLIT));
  const pick = (from: number, to: number): PairExample[] => Array.from(perm.subarray(from, to)).sort((a, b) => a - b).map((i) => pairs[i]);
  return {
    train: new PairDataset(pick(nEval, pairs.length), o.padId, seed),
    eval: nEval > 0 ? new PairDataset(pick(0, nEval), o.padId, seed) : null,
    badLines: bad.count, badLineMessages: bad.messages, truncated: 0, all: pairs,
  };
}

/** Encodes, truncates and range-checks the rows of one record. */
function prepareRows(rows: Example[], o: LoadPreferenceOptions, where: Where, names: string[]): { rows: Example[]; cut: boolean } {
  const out = rows.map((ex, i) => truncate(ex, o.seqLen, where, names[i]));
  for (const { ex } of out) checkTokenIds(ex, where, { vocabSize: o.vocabSize, tokenizer: true });
  return { rows: out.map((r) => r.ex), cut: out.some((r) => r.cut) };
}

/**
 * Reads {prompt, chosen, rejected} records (strings, messages, HH-RLHF transcripts) from JSONL,
 * JSON or Parquet files and encodes them.
 * @example const { train, eval } = await loadPreferenceData(['pairs.jsonl'], { tokenizer, seqLen: 512, padId: 0, evalFraction: 0.1 })
 */
export async function loadPreferenceData(paths: string | readonly string[], o: LoadPreferenceOptions): Promise<LoadedPairs> {
  const encode = completionEncoder(o);
  let truncated = 0;
  const { all: _all, ...r } = await readSplit(paths, o, (rec) => {
    const { rows: [chosen, rejected], cut } = prepareRows(encode(pairRecord(rec), rec.where), o, rec.where, ['chosen', 'rejected']);
    if (cut) truncated++;
    return { chosen, rejected };
  });
  return { ...r, truncated };
}

/** Where the completion starts: the first scored token. */
const completionStart = (ex: Example): number => ex.labels.findIndex((l) => l !== IGNORE_INDEX);

/**
 * KTO's unpaired {prompt, completion, label} records. Each example's KL row (for the KL estimate)
 * is its prompt with the next record's completion (file order, wrapping), fixed once so that the
 * reference's KL log-probs can be computed once; TRL pairs them likewise by shifting completions.
 * @example const { train } = await loadUnpairedData('kto.jsonl', { tokenizer, seqLen: 512, padId: 0 })
 */
export async function loadUnpairedData(paths: string | readonly string[], o: LoadPreferenceOptions): Promise<LoadedPairs> {
  const encode = completionEncoder(o);
  const wheres: Where[] = [];
  const split = await readSplit(paths, o, (rec) => {
    const r = unpairedRecord(rec);
    const [ex] = prepareRows(encode(r, rec.where), o, rec.where, ['KTO']).rows;
    wheres.push(rec.where);
    return { chosen: ex, rejected: ex, desirable: r.desirable };
  });
  const all = split.all;
  // the KL rows, made in place so that the train/eval datasets (which share these objects) see them
  const parts = all.map((p) => {
    const at = completionStart(p.chosen);
    return { prompt: p.chosen.inputIds.slice(0, at), completion: p.chosen.inputIds.slice(at) };
  });
  all.forEach((p, i) => {
    const { prompt } = parts[i];
    const other = parts[(i + 1) % all.length].completion;
    const kl = { inputIds: [...prompt, ...other], labels: [...prompt.map(() => IGNORE_INDEX), ...other] };
    p.rejected = truncate(kl, o.seqLen, wheres[i], 'KL (next record\'s)').ex;
  });
  const { all: _all, ...r } = split;
  return r;
}
