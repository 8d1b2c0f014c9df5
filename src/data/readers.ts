// Record readers: JSONL (streamed line by line, so multi-GB files never sit in memory, and a line
// over maxRecordBytes is a bad record, never held), JSON (an
// array of objects, or {"data": [...]}, as HF datasets' to_json/orient=records writes them),
// Parquet (parquet.ts) and folders of such files, walked in sorted order so runs are reproducible.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { BadLines, DataError, type Where } from './errors.js';
import { DEFAULT_MAX_RECORD_BYTES, readLines } from './lines.js';
import { readParquet } from './parquet.js';

/** One input record (a JSON object) and where it came from. */
export interface DataRecord {
  readonly value: Readonly<Record<string, unknown>>;
  readonly where: Where;
}

export type FileKind = 'jsonl' | 'json' | 'parquet';

export interface ReadOptions {
  /** JSONL: a longer line is a bad record, never read into memory; default 16 MiB */
  readonly maxRecordBytes?: number;
}

const KINDS: Readonly<Record<string, FileKind>> = { '.jsonl': 'jsonl', '.ndjson': 'jsonl', '.json': 'json', '.parquet': 'parquet' };

/** The reader a file needs, from its extension; null for files a folder walk skips. */
export function fileKind(file: string): FileKind | null {
  return KINDS[extname(file).toLowerCase()] ?? null;
}

function walk(dir: string): string[] {
  const out: string[] = [];
  // Sorted by name at every level (code-unit order, locale-independent) so the order never varies.
  for (const name of readdirSync(dir).sort()) {
    if (name.startsWith('.')) continue; // .cache, .git, editor files
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (fileKind(p) !== null) out.push(p);
  }
  return out;
}

/**
 * The data files of paths: files as given, folders expanded recursively in sorted order.
 * @example
 * listDataFiles(['data/']) // ['data/part-0.jsonl', 'data/part-1.jsonl', 'data/sub/x.parquet']
 */
export function listDataFiles(paths: string | readonly string[]): string[] {
  const list = typeof paths === 'string' ? [paths] : paths;
  if (list.length === 0) throw new Error('data: no data paths given');
  const out: string[] = [];
  for (const p of list) {
    if (!existsSync(p)) throw new Error(`data: ${p} does not exist`);
    if (statSync(p).isDirectory()) {
      const files = walk(p);
      if (files.length === 0) throw new Error(`data: folder ${p} holds no .jsonl, .ndjson, .json or .parquet files`);
      out.push(...files);
    } else if (fileKind(p) === null) {
      throw new Error(`data: ${p}: unknown file type ${JSON.stringify(extname(p))} (expected .jsonl, .ndjson, .json or .parquet)`);
    } else {
      out.push(p);
    }
  }
  return out;
}

function describe(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

/** The record, or a DataError when the value is not a JSON object. */
function asRecord(value: unknown, where: Where): DataRecord {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new DataError(where, `expected a JSON object, got ${describe(value)}`);
  }
  return { value: value as Record<string, unknown>, where };
}

const mib = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;

/**
 * Streams the records of a JSONL file; blank lines are skipped, a bad or oversized line goes to `bad`.
 * @example
 * for await (const r of readJsonl('train.jsonl', new BadLines(false))) console.log(r.value.text);
 */
export async function* readJsonl(file: string, bad: BadLines, opts: ReadOptions = {}): AsyncGenerator<DataRecord> {
  const max = opts.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
  for await (const { line, text: raw, bytes } of readLines(file, max)) {
    const where = { file, line };
    if (raw === null) {
      bad.report(new DataError(where, `the line is ${mib(bytes)} (${bytes} bytes), over the record size limit of ${mib(max)} (maxRecordBytes)`));
      continue;
    }
    const text = line === 1 && raw.charCodeAt(0) === 0xfeff ? raw.slice(1) : raw; // UTF-8 BOM
    if (text.trim() === '') continue;
    const rec = bad.guard(() => {
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch (e) {
        throw new DataError(where, `bad JSON (${(e as Error).message})`);
      }
      return asRecord(value, where);
    });
    if (rec !== undefined) yield rec;
  }
}

/** "line L, column C" of a JSON.parse error that reports a position, else "". */
function jsonErrorPlace(text: string, message: string): string {
  const m = /at position (\d+)/.exec(message);
  if (m === null) return '';
  const pos = Number(m[1]);
  const before = text.slice(0, pos);
  const line = before.split('\n').length;
  return ` at line ${line}, column ${pos - before.lastIndexOf('\n')}`;
}

/**
 * The records of a JSON file: a top-level array of objects, or an object whose "data" is one.
 * The file is parsed whole (JSON has no record boundaries); use JSONL for very large data.
 * A syntax error makes the whole file one bad record (skipped with skipBadLines, reported).
 * @example
 * for await (const r of readJson('alpaca.json', new BadLines(false))) console.log(r.value.instruction);
 */
export async function* readJson(file: string, bad: BadLines): AsyncGenerator<DataRecord> {
  let text = readFileSync(file, 'utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const items = bad.guard(() => {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (e) {
      const msg = (e as Error).message;
      throw new DataError({ file }, `bad JSON${jsonErrorPlace(text, msg)} (${msg})${bad.skip ? '; the whole file was skipped' : ''}`);
    }
    if (Array.isArray(doc)) return doc;
    if (typeof doc === 'object' && doc !== null && Array.isArray((doc as Record<string, unknown>).data)) {
      return (doc as Record<string, unknown[]>).data;
    }
    throw new DataError({ file }, `expected a JSON array of records or an object {"data": [...]}, got ${describe(doc)}${typeof doc === 'object' && doc !== null ? ` with keys ${Object.keys(doc).slice(0, 8).join(', ')}` : ''}`);
  });
  if (items === undefined) return;
  for (let i = 0; i < items.length; i++) {
    const rec = bad.guard(() => asRecord(items[i], { file, record: i + 1 }));
    if (rec !== undefined) yield rec;
  }
}

/**
 * The records of one data file, by its extension.
 * @example
 * for await (const r of readRecords('data/train.parquet', new BadLines(false))) use(r.value);
 */
export function readRecords(file: string, bad: BadLines, opts: ReadOptions = {}): AsyncGenerator<DataRecord> {
  const kind = fileKind(file);
  if (kind === 'jsonl') return readJsonl(file, bad, opts);
  if (kind === 'json') return readJson(file, bad);
  if (kind === 'parquet') return readParquet(file, bad);
  throw new Error(`data: ${file}: unknown file type ${JSON.stringify(extname(file))} (expected .jsonl, .ndjson, .json or .parquet)`);
}
