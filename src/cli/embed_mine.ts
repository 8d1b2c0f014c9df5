// `kestrel embed-mine --model DIR --data pairs.jsonl --output mined.jsonl [--num-negatives 3]`: hard
// negatives for (anchor, positive) rows from a corpus (default: the data's positives) with the
// current model, written as {anchor, positive, negative_1..k} rows that embed-train reads.
import { writeFileSync } from 'node:fs';
import { mineHardNegatives } from '../embed/mine.js';
import { readPairs } from '../embed/pairs.js';
import { EMBED_MODEL_FLAGS, embedderFromFlags, progressTo, readTexts } from './embed.js';
import { numberFlag, parseFlags } from './flags.js';

export async function embedMineCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    ...EMBED_MODEL_FLAGS, data: { type: 'string', multiple: true }, output: { type: 'string' }, corpus: { type: 'string' },
    'num-negatives': { type: 'string' }, skip: { type: 'string' }, 'batch-size': { type: 'string' },
    'query-prompt': { type: 'string' }, 'passage-prompt': { type: 'string' },
  });
  if (!values.data?.length || !values.output) throw new Error('--data FILE and --output FILE are required');
  const data = await readPairs(values.data);
  if (data.format !== 'triplets') throw new Error(`--data must hold {anchor, positive} rows, it holds ${data.format} rows`);
  const corpus = values.corpus ? await readTexts(values.corpus) : undefined;
  const model = await embedderFromFlags(values);
  try {
    const rows = mineHardNegatives(model, data.examples, {
      numNegatives: numberFlag(values, 'num-negatives', { int: true, min: 1 }), skip: numberFlag(values, 'skip', { int: true, min: 0 }), corpus,
      batchSize: numberFlag(values, 'batch-size', { int: true, min: 1 }), queryPrompt: values['query-prompt'], corpusPrompt: values['passage-prompt'],
      onProgress: progressTo('texts', values.quiet === true),
    });
    writeFileSync(values.output, rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    process.stdout.write(`mined ${Object.keys(rows[0]).length - 2} negatives for ${rows.length} rows -> ${values.output}\n`);
  } finally {
    model.dispose();
  }
  return 0;
}
