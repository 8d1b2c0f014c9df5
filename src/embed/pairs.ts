// Training data for embedding models, in sentence-transformers' column names: {anchor, positive}
// and {anchor, positive, negative | negatives | negative_1..n} (ranking and triplet losses),
// {sentence1, sentence2, score} (CoSENT, AnglE) and {sentence1, sentence2, label} (contrastive).
// JSONL, JSON or Parquet through the project's readers; a bad row is named file:line.
import { BadLines, DataError } from '../data/errors.js';
import { kindOf, stringField } from '../data/fields.js';
import { type DataRecord, listDataFiles, readRecords } from '../data/readers.js';
import { STREAM_EPOCH, SeededRandom, permutation } from '../data/shuffle.js';
import type { BatchOptions } from '../data/dataset.js';

export type PairFormat = 'triplets' | 'scored' | 'labelled';

/** One training row: its text columns in order (anchor, positive, negatives... or sentence1, sentence2) and its gold value. */
export interface PairExample {
  texts: string[];
  /** score (scored) or 0/1 label (labelled) */
  value?: number;
  where: string;
}

/** The row's format from its columns. */
function formatOf(v: Readonly<Record<string, unknown>>): PairFormat | null {
  if ('anchor' in v) return 'triplets';
  if ('sentence1' in v && 'score' in v) return 'scored';
  if ('sentence1' in v && 'label' in v) return 'labelled';
  return null;
}

function negativesOf(rec: DataRecord): string[] {
  const v = rec.value;
  if (v.negatives !== undefined) {
    if (!Array.isArray(v.negatives)) throw new DataError(rec.where, `field "negatives" must be an array of strings, got ${kindOf(v.negatives)}`);
    return v.negatives.map((n: unknown, i) => {
      if (typeof n !== 'string') throw new DataError(rec.where, `field "negatives[${i}]" must be a string, got ${kindOf(n)}`);
      return n;
    });
  }
  if (v.negative !== undefined) return [stringField(rec, v, 'negative')!];
  // mine_hard_negatives' output: negative_1, negative_2, ...
  const out: string[] = [];
  for (let i = 1; v[`negative_${i}`] !== undefined; i++) out.push(stringField(rec, v, `negative_${i}`)!);
  return out;
}

/** A record as an example of `format` (errors name file:line and the field). */
export function pairExample(rec: DataRecord, format: PairFormat): PairExample {
  const v = rec.value;
  const where = `${rec.where.file}:${rec.where.line ?? rec.where.record}`;
  if (format === 'triplets') return { texts: [stringField(rec, v, 'anchor')!, stringField(rec, v, 'positive')!, ...negativesOf(rec)], where };
  const texts = [stringField(rec, v, 'sentence1')!, stringField(rec, v, 'sentence2')!];
  const key = format === 'scored' ? 'score' : 'label';
  const value = v[key];
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new DataError(rec.where, `field "${key}" must be a number, got ${kindOf(value)}`);
  if (format === 'labelled' && value !== 0 && value !== 1) throw new DataError(rec.where, `field "label" must be 0 or 1, got ${value}`);
  return { texts, value, where };
}

export interface PairData {
  format: PairFormat;
  examples: PairExample[];
  badLines: number;
}

/**
 * Reads pair/triplet/scored rows; every row must have the first row's format and as many negatives.
 * @example const { format, examples } = await readPairs(['train.jsonl'])
 */
export async function readPairs(paths: string | readonly string[], opts: { skipBadLines?: boolean } = {}): Promise<PairData> {
  const bad = new BadLines(opts.skipBadLines ?? false);
  let format: PairFormat | null = null;
  let columns = -1;
  const examples: PairExample[] = [];
  for (const file of listDataFiles(paths)) {
    for await (const rec of readRecords(file, bad)) {
      const ex = bad.guard(() => {
        const f = formatOf(rec.value);
        if (!f) throw new DataError(rec.where, `no known columns: expected {anchor, positive[, negative | negatives]}, {sentence1, sentence2, score} or {sentence1, sentence2, label}, got {${Object.keys(rec.value).join(', ')}}`);
        if (format && f !== format) throw new DataError(rec.where, `a ${f} row in ${format} data (every row needs the same columns)`);
        const e = pairExample(rec, f);
        if (columns >= 0 && e.texts.length !== columns)
          throw new DataError(rec.where, `${e.texts.length - 2} negatives where earlier rows have ${columns - 2} (every row needs as many)`);
        format = f;
        columns = e.texts.length;
        return e;
      });
      if (ex) examples.push(ex);
    }
  }
  if (!format || examples.length === 0) throw new Error(`data: no usable rows in ${listDataFiles(paths).join(', ')}`);
  return { format, examples, badLines: bad.count };
}

/**
 * Seeded, resumable batches of examples (the Trainer's BatchSource): the same (seed, epoch) gives
 * the same batches, and startStep skips the ones a resumed run already took.
 * @example for (const batch of new PairDataset(examples, 0).batches({ batchSize: 32 })) use(batch)
 */
export class PairDataset {
  constructor(readonly examples: readonly PairExample[], readonly seed: number) {}

  get length(): number { return this.examples.length; }

  *batches(opts: BatchOptions): Generator<PairExample[]> {
    const { batchSize, epoch = 0, startStep = 0 } = opts;
    const n = this.examples.length;
    const order = opts.shuffle === false ? Int32Array.from({ length: n }, (_, i) => i) : permutation(n, new SeededRandom(opts.seed ?? this.seed, STREAM_EPOCH, epoch));
    const steps = opts.dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
    for (let s = startStep; s < steps; s++) yield Array.from(order.subarray(s * batchSize, Math.min((s + 1) * batchSize, n)), (i) => this.examples[i]);
  }
}
