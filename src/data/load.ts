// loadDataset: files -> records -> tokenized documents (through the disk cache) -> eval split ->
// packed or padded datasets. Everything is read and tokenized before it returns, so a malformed
// record stops the run before training starts (or is counted, with skipBadLines): bad JSON, an
// oversized line, a missing field, a token id outside the model's vocabulary.
import { BUILTIN_TEMPLATES, type Tokenizer } from '../tokenizer/index.js';
import { cacheKey, readCache, tokenizerIdentity, writeCache } from './cache.js';
import { type Dataset, PackedDataset, PaddedDataset } from './dataset.js';
import { BadLines } from './errors.js';
import { checkTokenIds } from './example.js';
import { type EncoderOptions, FORMATS, type FormatName, type RecordEncoder, detectFormat, makeEncoder } from './formats.js';
import { listDataFiles, readRecords } from './readers.js';
import { STREAM_SPLIT, SeededRandom, permutation } from './shuffle.js';
import { DocView, TokenStoreBuilder } from './token_store.js';

export interface LoadDatasetOptions extends EncoderOptions {
  /** default 'auto': detected per file from its first record */
  readonly format?: 'auto' | FormatName;
  readonly tokenizer?: Tokenizer;
  /** row length (packed) or the length examples are cut to (padded) */
  readonly seqLen: number;
  /** pack documents into seqLen rows; default true when every file is text, else false (pad) */
  readonly pack?: boolean;
  /** seeds the eval split and (by default) the shuffles; default 0 */
  readonly seed?: number;
  /** fraction of documents held out for eval, in [0, 1); default 0 */
  readonly evalFraction?: number;
  /** count malformed records instead of stopping (default false) */
  readonly skipBadLines?: boolean;
  /**
   * The model's vocabulary size: every token id, read (pretokenized) or made by the tokenizer, must
   * be below it; a record with one beyond is a bad record. Default the tokenizer's length, else 2^31.
   */
  readonly vocabSize?: number;
  /** JSONL lines longer than this are bad records, never read into memory; default 16 MiB */
  readonly maxRecordBytes?: number;
  /** a folder for the tokenization cache; none by default */
  readonly cacheDir?: string;
  /** padding id; default the tokenizer's pad, else its eos, else 0 */
  readonly padId?: number;
  /** padded batches: to the longest row (default) or to seqLen */
  readonly padding?: 'longest' | 'max';
}

export interface DatasetStats {
  readonly files: number;
  /** the format of each file (null: the file held no records) */
  readonly formats: Readonly<Record<string, FormatName | null>>;
  /** records that became documents */
  readonly records: number;
  readonly badLines: number;
  /** the first few bad-line messages (file:line: what is wrong) */
  readonly badLineMessages: readonly string[];
  readonly documents: number;
  readonly tokens: number;
  readonly packed: boolean;
  readonly trainExamples: number;
  readonly evalExamples: number;
  /** padded datasets: documents longer than seqLen, cut */
  readonly truncated: number;
  readonly cacheHits: number;
  readonly cacheMisses: number;
}

export interface LoadedData {
  readonly train: Dataset;
  readonly eval: Dataset | null;
  readonly stats: DatasetStats;
}

interface Tally {
  formats: Record<string, FormatName | null>;
  records: number;
  badLines: number;
  badLineMessages: string[];
  cacheHits: number;
  cacheMisses: number;
}

function validate(o: LoadDatasetOptions): void {
  if (!Number.isInteger(o.seqLen) || o.seqLen < 1) throw new RangeError(`loadDataset: seqLen must be a positive integer, got ${o.seqLen}`);
  const f = o.evalFraction ?? 0;
  if (!(f >= 0 && f < 1)) throw new RangeError(`loadDataset: evalFraction must be in [0, 1), got ${f}`);
  if (o.format !== undefined && o.format !== 'auto' && !FORMATS.includes(o.format)) {
    throw new Error(`loadDataset: unknown format ${JSON.stringify(o.format)}; expected auto, ${FORMATS.join(', ')}`);
  }
  if (o.padding !== undefined && o.padding !== 'longest' && o.padding !== 'max') throw new Error(`loadDataset: padding must be 'longest' or 'max', got ${JSON.stringify(o.padding)}`);
  if (o.seed !== undefined && !Number.isFinite(o.seed)) throw new RangeError(`loadDataset: seed must be a finite number, got ${o.seed}`);
  if (o.vocabSize !== undefined && !(Number.isInteger(o.vocabSize) && o.vocabSize >= 1 && o.vocabSize <= 2 ** 31)) {
    throw new RangeError(`loadDataset: vocabSize must be an integer in [1, 2^31], got ${o.vocabSize}`);
  }
  if (o.maxRecordBytes !== undefined && !(Number.isInteger(o.maxRecordBytes) && o.maxRecordBytes >= 1)) {
    throw new RangeError(`loadDataset: maxRecordBytes must be a positive integer, got ${o.maxRecordBytes}`);
  }
}

/** Everything besides the file itself that decides its tokens (the cache key's other half). */
function keyParts(o: LoadDatasetOptions): Record<string, unknown> {
  const t = o.chatTemplate;
  return {
    format: o.format ?? 'auto',
    tokenizer: o.tokenizer === undefined ? null : tokenizerIdentity(o.tokenizer),
    chatTemplate: t !== undefined && Object.hasOwn(BUILTIN_TEMPLATES, t) ? BUILTIN_TEMPLATES[t as keyof typeof BUILTIN_TEMPLATES] : (t ?? null),
    eosId: o.eosId ?? null,
    textField: o.textField ?? 'text',
    skipBadLines: o.skipBadLines === true,
    // Both decide which records are bad, so which ones an entry holds.
    vocabSize: o.vocabSize ?? null,
    maxRecordBytes: o.maxRecordBytes ?? null,
  };
}

/** Reads and tokenizes one file into the builder (or takes it from the cache). */
async function loadFile(file: string, b: TokenStoreBuilder, o: LoadDatasetOptions, tally: Tally): Promise<void> {
  const key = o.cacheDir === undefined ? null : cacheKey(file, keyParts(o));
  if (key !== null) {
    const hit = readCache(o.cacheDir!, key);
    if (hit !== null) {
      b.addStore(hit.store);
      tally.cacheHits++;
      tally.formats[file] = hit.meta.format === '' ? null : (hit.meta.format as FormatName);
      tally.records += hit.meta.records;
      tally.badLines += hit.meta.badLines;
      tally.badLineMessages.push(...hit.meta.badLineMessages);
      return;
    }
    tally.cacheMisses++;
  }
  const bad = new BadLines(o.skipBadLines === true);
  const first = b.count;
  const explicit = o.format === undefined || o.format === 'auto' ? null : o.format;
  let enc: RecordEncoder | null = explicit === null ? null : makeEncoder(explicit, o);
  let records = 0;
  const vocabSize = o.vocabSize ?? o.tokenizer?.length;
  for await (const rec of readRecords(file, bad, { maxRecordBytes: o.maxRecordBytes })) {
    if (enc === null) {
      const format = bad.guard(() => detectFormat(rec));
      if (format === undefined) continue;
      enc = makeEncoder(format, o);
    }
    const e = enc;
    const ex = bad.guard(() => {
      const x = e.encode(rec);
      checkTokenIds(x, rec.where, { vocabSize, tokenizer: e.format !== 'pretokenized' });
      return x;
    });
    if (ex === undefined) continue;
    b.add(ex);
    records++;
  }
  tally.formats[file] = enc?.format ?? null;
  tally.records += records;
  tally.badLines += bad.count;
  tally.badLineMessages.push(...bad.messages);
  if (key !== null) {
    writeCache(o.cacheDir!, key, b.slice(first), { format: enc?.format ?? '', records, badLines: bad.count, badLineMessages: bad.messages });
  }
}

/** Train and eval document indices: a seeded choice of round(fraction * n) documents held out, each set in file order. */
function split(n: number, fraction: number, seed: number): { train: Int32Array; eval: Int32Array | null } {
  const all = (): Int32Array => Int32Array.from({ length: n }, (_, i) => i);
  if (fraction === 0) return { train: all(), eval: null };
  if (n < 2) throw new Error(`loadDataset: evalFraction ${fraction} needs at least 2 documents, got ${n}`);
  const nEval = Math.min(n - 1, Math.max(1, Math.round(fraction * n)));
  const perm = permutation(n, new SeededRandom(seed, STREAM_SPLIT));
  return { train: perm.slice(nEval).sort(), eval: perm.slice(0, nEval).sort() };
}

/**
 * Loads data files or folders into train (and eval) datasets.
 * @example
 * const tok = await loadTokenizer('models/smol');
 * const { train, eval: ev, stats } = await loadDataset('data/', { tokenizer: tok, seqLen: 1024, evalFraction: 0.01, cacheDir: '.cache/data' });
 * for (const batch of train.batches({ batchSize: 8, epoch: 0 })) step(batch);
 */
export async function loadDataset(paths: string | readonly string[], opts: LoadDatasetOptions): Promise<LoadedData> {
  validate(opts);
  const files = listDataFiles(paths);
  const b = new TokenStoreBuilder();
  const tally: Tally = { formats: {}, records: 0, badLines: 0, badLineMessages: [], cacheHits: 0, cacheMisses: 0 };
  for (const file of files) await loadFile(file, b, opts, tally);
  const store = b.build();
  const n = b.count;
  if (n === 0) throw new Error(`loadDataset: no examples in ${files.join(', ')}${tally.badLines > 0 ? ` (${tally.badLines} bad records skipped)` : ''}`);

  const formats = Object.values(tally.formats).filter((f): f is FormatName => f !== null);
  const pack = opts.pack ?? formats.every((f) => f === 'text');
  const seed = opts.seed ?? 0;
  const tok = opts.tokenizer;
  const padId = opts.padId ?? tok?.padTokenId ?? opts.eosId ?? tok?.eosTokenId ?? 0;
  const parts = split(n, opts.evalFraction ?? 0, seed);
  const make = (docs: Int32Array): Dataset => {
    const view = new DocView(store, docs);
    return pack ? new PackedDataset(view, opts.seqLen, padId, seed) : new PaddedDataset(view, opts.seqLen, padId, seed, opts.padding ?? 'longest');
  };
  const train = make(parts.train);
  const evalSet = parts.eval === null ? null : make(parts.eval);
  const truncated = [train, evalSet].reduce((t, d) => t + (d instanceof PaddedDataset ? d.truncated : 0), 0);
  const stats: DatasetStats = {
    files: files.length, formats: tally.formats, records: tally.records, badLines: tally.badLines,
    badLineMessages: tally.badLineMessages.slice(0, 20), documents: n, tokens: store.ids.length, packed: pack,
    trainExamples: train.length, evalExamples: evalSet?.length ?? 0, truncated, cacheHits: tally.cacheHits, cacheMisses: tally.cacheMisses,
  };
  return { train, eval: evalSet, stats };
}
