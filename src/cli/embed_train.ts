// `kestrel embed-train --model DIR --data FILE --output DIR --loss mnrl|triplet|cosent|angle|contrastive
// [--lora] [--matryoshka 768,512,256] [--gradcache-chunk N] [--dtype fp32|bf16] [--resume latest|DIR]`:
// contrastive training of an embedding model on the Trainer; writes metrics.jsonl (and eval.jsonl
// when --eval-data is given), checkpoints every --save-every steps, and the trained model in
// sentence-transformers' layout (LoRA merged; the adapter also in adapter/).
import { existsSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { type EmbedLossConfig, LOSSES, type LossName } from '../embed/objective.js';
import { readPairs } from '../embed/pairs.js';
import { saveEmbedder } from '../embed/st_folder.js';
import { trainEmbedder } from '../embed/train.js';
import type { SentenceEmbedder } from '../embed/model.js';
import { castFrozenLinears } from '../lora/frozen_dtype.js';
import { type LoraConfig, injectLora, mergeLora, saveAdapter } from '../lora/peft.js';
import { Interrupted } from '../train/interrupt.js';
import { EMBED_MODEL_FLAGS, embedderFromFlags } from './embed.js';
import { loraFromFlags } from './finetune.js';
import { numberFlag, parseFlags } from './flags.js';
import { resumePath } from './train.js';
import { checkNumber } from '../io/check.js';

const FLAGS = {
  ...EMBED_MODEL_FLAGS, data: { type: 'string', multiple: true }, output: { type: 'string' }, loss: { type: 'string' },
  'batch-size': { type: 'string' }, 'max-steps': { type: 'string' }, lr: { type: 'string' }, warmup: { type: 'string' },
  'weight-decay': { type: 'string' }, clip: { type: 'string' }, seed: { type: 'string' }, scale: { type: 'string' },
  'learnable-scale': { type: 'boolean' }, symmetric: { type: 'boolean' }, margin: { type: 'string' }, distance: { type: 'string' },
  matryoshka: { type: 'string' }, 'gradcache-chunk': { type: 'string' }, 'query-prompt': { type: 'string' }, 'passage-prompt': { type: 'string' },
  'eval-data': { type: 'string', multiple: true }, 'eval-every': { type: 'string' }, 'save-every': { type: 'string' }, 'skip-bad-lines': { type: 'boolean' },
  dtype: { type: 'string' }, resume: { type: 'string' },
  lora: { type: 'boolean' }, 'lora-r': { type: 'string' }, 'lora-alpha': { type: 'string' }, 'lora-dropout': { type: 'string' }, target: { type: 'string' }, rslora: { type: 'boolean' },
} as const;

type Values = Record<string, unknown>;

function lossFromFlags(values: Values): EmbedLossConfig {
  const loss = (values.loss as string | undefined) ?? 'mnrl';
  if (!LOSSES.includes(loss as LossName)) throw new Error(`--loss must be one of ${LOSSES.join(', ')}, got '${loss}'`);
  const distance = values.distance as string | undefined;
  if (distance !== undefined && distance !== 'euclidean' && distance !== 'cosine') throw new Error(`--distance must be euclidean or cosine, got '${distance}'`);
  const matryoshka = (values.matryoshka as string | undefined)?.split(',').map((d) => checkNumber(Number(d.trim() || NaN), { int: true, min: 1 }, '--matryoshka'));
  return {
    loss: loss as LossName, scale: numberFlag(values, 'scale', { above: 0 }), learnableScale: values['learnable-scale'] === true, symmetric: values.symmetric === true,
    margin: numberFlag(values, 'margin', { min: 0 }), distance, matryoshka,
  };
}

/**
 * The trained model on a float32 base, for merging: under --dtype bf16 the frozen Linear weights
 * were rounded to bf16, so the base is read again from --model and the trained parameters (LoRA
 * A/B, Dense) copied into it; the merged model is then the original base plus the adapter.
 */
async function float32Base(trained: SentenceEmbedder, values: Values, lora: LoraConfig): Promise<SentenceEmbedder> {
  const fresh = await embedderFromFlags(values);
  Object.assign(fresh.settings, trained.settings);
  injectLora(fresh.backbone, lora);
  fresh.loadStateDict(Object.fromEntries(trained.namedParameters().filter(([, p]) => p.requiresGrad)), { strict: false });
  return fresh;
}

export async function embedTrainCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, FLAGS);
  if (!values.data?.length || !values.output) throw new Error('--data FILE and --output DIR are required');
  if (values.model && existsSync(values.output) && realpathSync(values.output) === realpathSync(values.model))
    throw new Error(`--output ${values.output} is the --model folder: saving would overwrite the base model; choose another output folder`);
  const loss = lossFromFlags(values);
  const dtype = (values.dtype as string | undefined) ?? 'fp32';
  if (dtype !== 'fp32' && dtype !== 'bf16') throw new Error(`--dtype must be fp32 or bf16, got '${dtype}'`);
  const resumeFrom = values.resume === undefined ? undefined : resumePath({ resume: values.resume, output: values.output });
  const lora = values.lora ? loraFromFlags(values) : null;
  const int = (name: string): number | undefined => numberFlag(values, name, { int: true, min: 1 });
  const data = await readPairs(values.data, { skipBadLines: values['skip-bad-lines'] === true });
  const evalData = values['eval-data']?.length ? await readPairs(values['eval-data']) : null;
  const model = await embedderFromFlags(values);
  let merged: SentenceEmbedder | null = null;
  const quiet = values.quiet === true;
  try {
    const prompts = { query: (values['query-prompt'] as string | undefined) ?? '', passage: (values['passage-prompt'] as string | undefined) ?? '' };
    // stored with the model (config_sentence_transformers.json), so encode({ promptName: 'query' }) reproduces training
    if (prompts.query || prompts.passage) Object.assign(model.settings.prompts, prompts);
    if (lora) {
      const layers = injectLora(model.backbone, lora);
      // bf16: the frozen base Linear weights are stored in bf16, as kestrel finetune keeps them
      if (dtype === 'bf16') castFrozenLinears(model, 'bfloat16');
      if (!quiet) process.stderr.write(`LoRA r ${lora.r} alpha ${lora.alpha} on ${layers.length} layers of the backbone (frozen base in ${dtype})\n`);
    }
    const batchSize = int('batch-size') ?? 32;
    if (evalData && evalData.format !== data.format) throw new Error(`--eval-data holds ${evalData.format} rows, --data ${data.format} rows; evaluation needs the same kind`);
    const { metrics, evals, trainer } = await trainEmbedder({
      model, examples: data.examples, format: data.format, loss, batchSize,
      maxSteps: int('max-steps') ?? Math.ceil(data.examples.length / batchSize), lr: numberFlag(values, 'lr', { above: 0 }),
      warmup: numberFlag(values, 'warmup', { int: true, min: 0 }), weightDecay: numberFlag(values, 'weight-decay', { min: 0 }),
      clip: numberFlag(values, 'clip', { min: 0 }), seed: numberFlag(values, 'seed', { int: true, min: 0 }), gradCacheChunk: int('gradcache-chunk'),
      // the anchor (or sentence1) gets the query prompt, the other columns the passage prompt
      columnPrompts: data.format === 'triplets' ? [prompts.query, ...data.examples[0].texts.slice(1).map(() => prompts.passage)] : undefined,
      evalExamples: evalData?.examples, evalEvery: int('eval-every') ?? (evalData ? 50 : undefined),
      outputDir: values.output, saveEvery: int('save-every'), resumeFrom, dtype, progress: !quiet && process.stderr.isTTY,
    });
    if (trainer.interrupted) throw new Interrupted(`interrupted at step ${trainer.step}: checkpoint saved to ${trainer.lastCheckpoint}; continue with --resume latest`);
    let final = model;
    if (lora) {
      saveAdapter(model.backbone, join(values.output, 'adapter'), lora, { baseModel: values.model });
      if (dtype === 'bf16') final = merged = await float32Base(model, values, lora);
      mergeLora(final.backbone);
    }
    saveEmbedder(final, values.output);
    const last = metrics.at(-1);
    const ev = evals.at(-1)?.metrics;
    process.stdout.write(`trained ${metrics.length} steps${last ? `, loss ${last.loss.toFixed(4)}` : ''}${ev ? `, eval ${Object.entries(ev).map(([k, v]) => `${k} ${v.toFixed(4)}`).join(' ')}` : ''}; sentence-transformers model saved to ${values.output}\n`);
  } finally {
    model.dispose();
    merged?.dispose();
  }
  return 0;
}
