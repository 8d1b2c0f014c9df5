// Contrastive training of an embedding model on the project's Trainer (its TrainStep hook):
// AdamW with decoupled weight decay, linear decay after warm-up (sentence-transformers' default
// schedule), optional LoRA on the backbone, periodic retrieval / STS evaluation in metrics.jsonl.
import { AdamW } from '../optim/adamw.js';
import { linear } from '../optim/schedules.js';
import { decayParamGroups } from '../train/param_groups.js';
import { type StepMetrics, Trainer } from '../train/trainer.js';
import type { SentenceEmbedder } from './model.js';
import { type EmbedLossConfig, EmbeddingTrainee, checkLossData, embeddingStep } from './objective.js';
import { PairDataset, type PairExample, type PairFormat } from './pairs.js';

export interface EmbedTrainOptions {
  model: SentenceEmbedder;
  examples: readonly PairExample[];
  format: PairFormat;
  loss: EmbedLossConfig;
  batchSize: number;
  maxSteps: number;
  /** default 2e-5 (sentence-transformers' default; small models from scratch want ~1e-3) */
  lr?: number;
  weightDecay?: number;
  /** warm-up steps before the linear decay (default 10% of maxSteps) */
  warmup?: number;
  clip?: number;
  seed?: number;
  gradCacheChunk?: number;
  columnPrompts?: string[];
  /** held-out rows evaluated every evalEvery steps (evalMetrics: retrieval or STS) into eval.jsonl */
  evalExamples?: readonly PairExample[];
  evalEvery?: number;
  evaluator?: (examples: PairExample[]) => Record<string, number>;
  outputDir?: string;
  saveEvery?: number;
  /** a checkpoint folder (outputDir/checkpoint-N) to continue from exactly */
  resumeFrom?: string;
  /** compute precision: bf16 matmuls under autocast with float32 master weights (default fp32) */
  dtype?: 'fp32' | 'bf16';
  progress?: boolean;
}

/** One evaluation: the step it ran after, the held-out loss and the metrics (eval.jsonl's line without the eval_ prefix). */
export interface EvalRecord {
  step: number;
  loss: number;
  metrics: Record<string, number>;
}

/**
 * Trains the model in place; returns the per-step metrics and every evaluation.
 * @example await trainEmbedder({ model, examples, format: 'triplets', loss: { loss: 'mnrl' }, batchSize: 32, maxSteps: 200 })
 */
export async function trainEmbedder(o: EmbedTrainOptions): Promise<{ metrics: StepMetrics[]; evals: EvalRecord[]; trainer: Trainer<PairExample[]> }> {
  checkLossData(o.loss, o.format, o.examples[0]?.texts.length ?? 0);
  const trainee = new EmbeddingTrainee(o.model, o.loss);
  const lr = o.lr ?? 2e-5;
  const optimizer = new AdamW(decayParamGroups(trainee, o.weightDecay ?? 0.01), { lr });
  const evals: EvalRecord[] = [];
  const trainer = new Trainer<PairExample[]>({
    model: trainee, data: new PairDataset(o.examples, o.seed ?? 0), optimizer,
    step: embeddingStep(trainee, o.loss, { gradCacheChunk: o.gradCacheChunk, columnPrompts: o.columnPrompts, evaluator: o.evaluator }),
    evalData: o.evalExamples ? new PairDataset(o.evalExamples, 0) : null, evalEvery: o.evalEvery,
    onEval: (r) => evals.push({ step: r.step, loss: r.loss, metrics: r.metrics ?? {} }),
    schedule: linear(lr, o.warmup ?? Math.ceil(o.maxSteps / 10), o.maxSteps), batchSize: o.batchSize, maxSteps: o.maxSteps,
    clip: o.clip ?? 1, outputDir: o.outputDir, saveEvery: o.saveEvery, resumeFrom: o.resumeFrom, dtype: o.dtype, progress: o.progress,
  });
  try {
    return { metrics: await trainer.train(), evals, trainer };
  } finally {
    optimizer.dispose();
  }
}
