// Parquet records through hyparquet (pure JS): read one row group at a time so a large file is
// never decoded whole, with values made JSON-like (INT64 bigints -> numbers, typed arrays ->
// arrays) so that the formats see the same records a JSONL export of the data set would give.
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { type BadLines, DataError } from './errors.js';
import type { DataRecord } from './readers.js';

/** A parquet value as JSON would hold it; an integer beyond 2^53 stays a bigint (the formats reject it). */
function jsonLike(v: unknown, keepBytes = false): unknown {
  if (keepBytes && v instanceof Uint8Array) return v;
  if (typeof v === 'bigint') return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Array.from(v as unknown as ArrayLike<number | bigint>, (x) => jsonLike(x));
  if (Array.isArray(v)) return v.map((x) => jsonLike(x, keepBytes));
  if (v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = jsonLike(x, keepBytes);
    return out;
  }
  return v;
}

/**
 * Streams the rows of a Parquet file as records, row group by row group.
 * Snappy and uncompressed files are read; other codecs (zstd, gzip) need hyparquet-compressors.
 * Unannotated BYTE_ARRAY columns decode as text (hyparquet's default: many writers omit the
 * STRING annotation) unless `utf8: false`, which keeps them as Uint8Array bytes (audio files in a
 * column), not arrays of numbers.
 * @example
 * for await (const r of readParquet('train-00000-of-00001.parquet', new BadLines(false))) use(r.value);
 */
export async function* readParquet(file: string, bad: BadLines, opts: { utf8?: boolean } = {}): AsyncGenerator<DataRecord> {
  let row = 0;
  try {
    const buffer = await asyncBufferFromFile(file);
    const metadata = await parquetMetadataAsync(buffer);
    for (const group of metadata.row_groups) {
      const rowStart = row, rowEnd = row + Number(group.num_rows);
      const rows = await parquetReadObjects({ file: buffer, metadata, rowStart, rowEnd, utf8: opts.utf8 });
      for (const r of rows) {
        row++;
        const value = jsonLike(r, opts.utf8 === false);
        const rec = bad.guard(() => {
          if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new DataError({ file, record: row }, 'expected a row object');
          return { value: value as Record<string, unknown>, where: { file, record: row } };
        });
        if (rec !== undefined) yield rec;
      }
      row = rowEnd;
    }
  } catch (e) {
    if (e instanceof DataError) throw e;
    // A corrupt footer or an unsupported codec breaks the whole file: not a skippable record.
    throw new Error(`data: ${file}: cannot read Parquet${row > 0 ? ` after row ${row}` : ''}: ${(e as Error).message}`, { cause: e });
  }
}
