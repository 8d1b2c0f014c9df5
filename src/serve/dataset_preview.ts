// The training page's dataset preview: the first rows of an upload encoded exactly as `kestrel
// finetune` will encode them for a model (its format detected, its chat template applied), shown
// as the text the model reads, special tokens included, split into the spans it is trained on
// (labels kept) and the spans it only reads (prompt tokens masked out of the loss).
import { readFileSync } from 'node:fs';
import { IGNORE_INDEX } from '../data/example.js';
import { DataError } from '../data/errors.js';
import { detectFormat, makeEncoder } from '../data/formats.js';
import type { DataRecord } from '../data/readers.js';
import type { Tokenizer } from '../tokenizer/index.js';
import { invalid } from './errors.js';
import type { DatasetPreview } from './studio_types.js';

const ROWS = 3;

/** Decoded runs of consecutive tokens that are all trained on, or all not. */
function spans(tok: Tokenizer, ids: readonly number[], labels: readonly number[]): DatasetPreview['rows'][number]['spans'] {
  const out: DatasetPreview['rows'][number]['spans'] = [];
  for (let i = 0; i < ids.length;) {
    const trained = labels[i] !== IGNORE_INDEX;
    let j = i;
    while (j < ids.length && (labels[j] !== IGNORE_INDEX) === trained) j++;
    out.push({ text: tok.decode(ids.slice(i, j)), trained });
    i = j;
  }
  return out;
}

/** The first rows of the JSONL file `path` as `tok` (and its chat template) encodes them. */
export function previewDataset(path: string, tok: Tokenizer): DatasetPreview {
  const lines = readFileSync(path, 'utf8').split('\n');
  const records: DataRecord[] = [];
  for (let i = 0; i < lines.length && records.length < ROWS; i++)
    if (lines[i].trim()) {
      const value: unknown = JSON.parse(lines[i]);
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(`upload:${i + 1}: a row must be a JSON object, got ${JSON.stringify(value).slice(0, 40)}`, 'dataset');
      records.push({ value: value as Record<string, unknown>, where: { file: 'upload', line: i + 1 } });
    }
  try {
    const format = detectFormat(records[0]);
    const encoder = makeEncoder(format, { tokenizer: tok });
    return {
      format,
      rows: records.map((rec) => {
        const ex = encoder.encode(rec);
        return { tokens: ex.inputIds.length, spans: spans(tok, ex.inputIds, ex.labels) };
      }),
    };
  } catch (e) {
    if (e instanceof DataError || /^data: /.test((e as Error).message)) throw invalid((e as Error).message, 'dataset');
    throw e;
  }
}
