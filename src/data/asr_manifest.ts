// Speech manifests for ASR fine-tuning: JSONL lines {"audio": path, "text": transcript}, audio
// paths relative to the manifest's folder. Errors name file:line.
import { existsSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { DEFAULT_MAX_RECORD_BYTES, readLines } from './lines.js';

export interface AsrRecord {
  /** the audio file, resolved against the manifest's folder */
  audio: string;
  text: string;
  /** file:line, for errors about this record */
  where: string;
}

/** An audio path resolved against the data file's folder, checked to exist (where names the record). */
export function audioPath(path: string, dataFile: string, where: string): string {
  const abs = isAbsolute(path) ? path : resolve(dirname(dataFile), path);
  if (!existsSync(abs)) throw new Error(`${where}: audio file ${abs} not found`);
  return abs;
}

/**
 * @example const records = await readAsrManifest('data/train.jsonl')  // [{ audio: '/abs/a.wav', text: 'hello', where: 'data/train.jsonl:1' }]
 */
export async function readAsrManifest(file: string): Promise<AsrRecord[]> {
  if (!existsSync(file)) throw new Error(`${file}: manifest not found`);
  const out: AsrRecord[] = [];
  for await (const l of readLines(file, DEFAULT_MAX_RECORD_BYTES)) {
    const where = `${file}:${l.line}`;
    if (l.text === null) throw new Error(`${where}: line of ${l.bytes} bytes is too long for a manifest record`);
    if (!l.text.trim()) continue;
    let rec: unknown;
    try {
      rec = JSON.parse(l.text);
    } catch (e) {
      throw new Error(`${where}: not JSON (${(e as Error).message})`);
    }
    const r = rec as { audio?: unknown; text?: unknown };
    if (typeof r !== 'object' || r === null || typeof r.audio !== 'string' || typeof r.text !== 'string')
      throw new Error(`${where}: a record needs string fields "audio" (a file path) and "text", got ${l.text.slice(0, 80)}`);
    out.push({ audio: audioPath(r.audio, file, where), text: r.text, where });
  }
  if (!out.length) throw new Error(`${file}: no records`);
  return out;
}
