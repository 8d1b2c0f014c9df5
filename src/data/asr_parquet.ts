// Speech data from Parquet, as 🤗 datasets writes it (its Audio feature: a struct
// {bytes: binary | null, path: string | null} per row; bytes hold the whole file, WAV or any
// container ffmpeg reads, and path, when bytes is null, names a file relative to the Parquet file),
// or an audio column of plain paths. The transcript is the first of the columns "text",
// "sentence" (Common Voice), "transcription" (MINDS-14) the row has. Errors name file and row.
import { existsSync } from 'node:fs';
import type { AudioSource } from '../audio/load.js';
import { audioPath, readAsrManifest } from './asr_manifest.js';
import { BadLines } from './errors.js';
import { readParquet } from './parquet.js';

/** One utterance: the audio (a path or a file's bytes) and its transcript. */
export interface AsrSample {
  audio: AudioSource;
  text: string;
  /** file:line or file row n, for errors about this sample */
  where: string;
}

export const TEXT_COLUMNS = ['text', 'sentence', 'transcription'] as const;

/** The audio column's value as a source: a path string, or {bytes, path} with bytes or a path. */
function audioOf(v: unknown, file: string, where: string): AudioSource {
  if (typeof v === 'string') return audioPath(v, file, where);
  const s = v as { bytes?: unknown; path?: unknown } | null;
  if (s !== null && typeof s === 'object') {
    const name = typeof s.path === 'string' && s.path ? `${where} (${s.path})` : where;
    if (s.bytes instanceof Uint8Array && s.bytes.length) return { bytes: s.bytes, name };
    if (typeof s.path === 'string' && s.path) return audioPath(s.path, file, where);
  }
  throw new Error(`${where}: column "audio" must be a path or a 🤗 datasets Audio struct {bytes, path} with bytes or a path, got ${JSON.stringify(v)?.slice(0, 80)}`);
}

/**
 * @example const samples = await readAsrParquet('train-00000-of-00001.parquet')  // [{ audio: { bytes, name }, text, where: '...parquet row 1' }]
 */
export async function readAsrParquet(file: string): Promise<AsrSample[]> {
  if (!existsSync(file)) throw new Error(`${file}: data file not found`);
  const out: AsrSample[] = [];
  for await (const r of readParquet(file, new BadLines(false), { utf8: false })) {
    const where = `${file} row ${r.where.record}`;
    const textColumn = TEXT_COLUMNS.find((c) => typeof r.value[c] === 'string');
    if (!('audio' in r.value) || textColumn === undefined)
      throw new Error(`${where}: a row needs an "audio" column and a string transcript in one of ${TEXT_COLUMNS.map((c) => `"${c}"`).join(', ')} (columns: ${Object.keys(r.value).join(', ')})`);
    out.push({ audio: audioOf(r.value.audio, file, where), text: r.value[textColumn] as string, where });
  }
  if (!out.length) throw new Error(`${file}: no rows`);
  return out;
}

/**
 * Speech data by its extension: .parquet (readAsrParquet), anything else a JSONL manifest
 * (readAsrManifest).
 * @example const train = await readAsrData('data/train.parquet')
 */
export function readAsrData(file: string): Promise<AsrSample[]> {
  return file.toLowerCase().endsWith('.parquet') ? readAsrParquet(file) : readAsrManifest(file);
}
