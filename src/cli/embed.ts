// `kestrel embed --model DIR --input texts.jsonl --output vectors.jsonl`: one {"embedding": [...]}
// line per {"text": ...} input line, in the same order; any sentence-transformers folder, or an HF
// BERT / decoder folder with mean pooling by default. Batched, with a progress bar on a terminal.
import { createWriteStream } from 'node:fs';
import { once } from 'node:events';
import { BadLines } from '../data/errors.js';
import { stringField } from '../data/fields.js';
import { readJsonl } from '../data/readers.js';
import { encode } from '../embed/encode.js';
import type { SentenceEmbedder } from '../embed/model.js';
import { type PoolingSpec, parsePooling } from '../embed/pooling.js';
import { loadEmbedder } from '../embed/st_folder.js';
import { progressBar } from '../train/progress.js';
import { numberFlag, parseFlags } from './flags.js';

/** The flags every embedding command loads its model with. */
export const EMBED_MODEL_FLAGS = {
  model: { type: 'string' }, pooling: { type: 'string' }, normalize: { type: 'boolean' }, 'max-seq-length': { type: 'string' }, quiet: { type: 'boolean' },
} as const;

/** Loads --model with --pooling / --normalize / --max-seq-length applied. */
export async function embedderFromFlags(values: Record<string, unknown>): Promise<SentenceEmbedder> {
  const dir = values.model as string | undefined;
  if (!dir) throw new Error('--model DIR is required');
  let pooling: PoolingSpec | undefined;
  try {
    pooling = values.pooling === undefined ? undefined : parsePooling(values.pooling as string);
  } catch (e) {
    throw new Error(`--pooling: ${(e as Error).message}`);
  }
  const maxSeqLength = numberFlag(values, 'max-seq-length', { int: true, min: 1 });
  const model = await loadEmbedder(dir, { pooling, normalize: values.normalize === true ? true : undefined });
  if (maxSeqLength) model.settings.maxSeqLength = maxSeqLength;
  return model;
}

/** A progress callback drawing the bar on a terminal (none with --quiet or when stderr is a file). */
export function progressTo(what: string, quiet: boolean): ((done: number, total: number) => void) | undefined {
  if (quiet || !process.stderr.isTTY) return undefined;
  return (done, total) => process.stderr.write(`\r${progressBar(done, total)} ${what}${done === total ? '\n' : ''}`);
}

/** The "text" field of every line of a JSONL file (errors name file:line). */
export async function readTexts(file: string): Promise<string[]> {
  const texts: string[] = [];
  for await (const rec of readJsonl(file, new BadLines(false))) texts.push(stringField(rec, rec.value, 'text')!);
  if (!texts.length) throw new Error(`${file}: no lines with {"text": ...}`);
  return texts;
}

export async function embedCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    ...EMBED_MODEL_FLAGS, input: { type: 'string' }, output: { type: 'string' }, 'batch-size': { type: 'string' },
    'prompt-name': { type: 'string' }, prompt: { type: 'string' },
  });
  if (!values.input || !values.output) throw new Error('--input texts.jsonl and --output vectors.jsonl are required');
  const batchSize = numberFlag(values, 'batch-size', { int: true, min: 1 }) ?? 32;
  const texts = await readTexts(values.input);
  const model = await embedderFromFlags(values);
  try {
    const t0 = performance.now();
    const vectors = encode(model, texts, { batchSize, promptName: values['prompt-name'], prompt: values.prompt, onProgress: progressTo('texts', values.quiet === true) });
    const seconds = (performance.now() - t0) / 1e3;
    const out = createWriteStream(values.output);
    for (const v of vectors) if (!out.write(`{"embedding":[${Array.from(v).join(',')}]}\n`)) await once(out, 'drain');
    out.end();
    await once(out, 'finish');
    process.stdout.write(`embedded ${texts.length} texts (dim ${vectors[0].length}) in ${seconds.toFixed(2)} s (${(texts.length / seconds).toFixed(1)} texts/s) -> ${values.output}\n`);
  } finally {
    model.dispose();
  }
  return 0;
}
