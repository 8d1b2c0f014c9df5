// The embedding training step the Trainer runs (its TrainStep hook): a batch of pair examples ->
// one embedding per text column -> the chosen loss (optionally Matryoshka over several widths),
// in one forward or through GradCache, with an optional learnable log-scale for InfoNCE.
import { mul, unary } from '../ops/elementwise.js';
import { Module, Parameter } from '../nn/module.js';
import { tensor } from '../ops/creation.js';
import { autocast } from '../tensor/autocast.js';
import type { Tensor } from '../tensor/tensor.js';
import type { TrainStep } from '../train/step.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import { item } from '../ops/transfer.js';
import { evaluateRetrieval, evaluateSts, retrievalSetFromPairs } from './evaluate.js';
import { fullBatchBackward, gradCacheBackward } from './grad_cache.js';
import { angleLoss, contrastiveLoss, cosentLoss, matryoshkaLoss, mnrlLoss, tripletLoss } from './losses.js';
import type { SentenceEmbedder, TextBatch } from './model.js';
import { embedColumns } from './columns.js';
import { withWeightCache } from '../ops/fused/weight_cache.js';
import type { PairExample, PairFormat } from './pairs.js';

export const LOSSES = ['mnrl', 'triplet', 'cosent', 'angle', 'contrastive'] as const;
export type LossName = (typeof LOSSES)[number];
/** the data format each loss reads */
export const LOSS_FORMAT: Record<LossName, PairFormat> = { mnrl: 'triplets', triplet: 'triplets', cosent: 'scored', angle: 'scored', contrastive: 'labelled' };

export interface EmbedLossConfig {
  loss: LossName;
  /** mnrl, cosent, angle: the similarity scale (default 20); mnrl with learnableScale starts from it */
  scale?: number;
  learnableScale?: boolean;
  symmetric?: boolean;
  /** triplet: default 5; contrastive: default 0.5 */
  margin?: number;
  distance?: 'euclidean' | 'cosine';
  /** Matryoshka: the loss summed over the embeddings cut to each of these widths */
  matryoshka?: number[];
}

/** Throws unless the data has the columns the loss needs. */
export function checkLossData(cfg: EmbedLossConfig, format: PairFormat, columns: number): void {
  const want = LOSS_FORMAT[cfg.loss];
  if (format !== want) throw new Error(`--loss ${cfg.loss} needs ${want} data (${want === 'triplets' ? '{anchor, positive, ...}' : want === 'scored' ? '{sentence1, sentence2, score}' : '{sentence1, sentence2, label}'}), the data is ${format}`);
  if (cfg.loss === 'triplet' && columns !== 3) throw new Error(`--loss triplet needs exactly one negative per row, the data has ${columns - 2}`);
}

/** The model being trained plus the loss's own parameter (a learnable log-scale), as one Module for the optimizer and checkpoints. */
export class EmbeddingTrainee extends Module {
  log_scale: Tensor | null = null;
  constructor(readonly embedder: SentenceEmbedder, cfg: EmbedLossConfig) {
    super();
    const like = embedder.parameters()[0];
    if (cfg.learnableScale) this.log_scale = Parameter(tensor([Math.log(cfg.scale ?? 20)], { backend: like?.backendName, dtype: like?.dtype }));
  }
}

/** The loss of one batch from its columns' embeddings. */
export function batchLoss(cfg: EmbedLossConfig, embeddings: Tensor[], batch: readonly PairExample[], logScale: Tensor | null): Tensor {
  const one = (e: Tensor[]): Tensor => {
    switch (cfg.loss) {
      case 'mnrl':
        return mnrlLoss(e[0], e[1], e.slice(2), {
          scale: logScale ? unary('exp', logScale) : cfg.scale, symmetric: cfg.symmetric,
          anchorKeys: batch.map((x) => x.texts[0]), positiveKeys: batch.map((x) => x.texts[1]),
          negativeKeys: e.slice(2).map((_, k) => batch.map((x) => x.texts[2 + k])),
        });
      case 'triplet': return tripletLoss(e[0], e[1], e[2], { distance: cfg.distance, margin: cfg.margin });
      case 'cosent': return cosentLoss(e[0], e[1], batch.map((x) => x.value!), { scale: cfg.scale });
      case 'angle': return angleLoss(e[0], e[1], batch.map((x) => x.value!), { scale: cfg.scale });
      case 'contrastive': return contrastiveLoss(e[0], e[1], batch.map((x) => x.value!), { margin: cfg.margin });
    }
  };
  return cfg.matryoshka?.length ? matryoshkaLoss(embeddings, cfg.matryoshka, one) : one(embeddings);
}

export interface EmbeddingStepOptions {
  /** GradCache: embed this many texts per forward with autograd (0 or undefined: the whole batch at once) */
  gradCacheChunk?: number;
  /** a prompt text per column (e.g. "query: " for the anchors, "passage: " for the rest) */
  columnPrompts?: string[];
  /** the eval metrics of held-out examples (default: evalMetrics, retrieval or STS by the data's format) */
  evaluator?: (examples: PairExample[]) => Record<string, number>;
}

/**
 * Held-out rows' metrics: (anchor, positive) rows as a retrieval task (the anchors query every
 * distinct positive / negative text; recall@k, MRR@10, NDCG@10), scored or labelled pairs as STS
 * (Spearman of the cosine against the score).
 */
export function evalMetrics(model: SentenceEmbedder, examples: readonly PairExample[], columnPrompts: readonly string[] = []): Record<string, number> {
  if (examples[0]?.value === undefined)
    return evaluateRetrieval(model, retrievalSetFromPairs(examples), { queryPrompt: columnPrompts[0] ?? '', corpusPrompt: columnPrompts[1] ?? '' });
  return evaluateSts(model, examples.map((e) => [e.texts[0], e.texts[1], e.value!] as const));
}

/**
 * The Trainer's step for embedding models.
 * @example new Trainer({ model: trainee, data: new PairDataset(ex, 0), step: embeddingStep(trainee, { loss: 'mnrl' }), batchSize: 32, maxSteps: 100 })
 */
export function embeddingStep(t: EmbeddingTrainee, cfg: EmbedLossConfig, o: EmbeddingStepOptions = {}): TrainStep<PairExample[]> {
  const model = t.embedder;
  let tokens = 0;
  const countTokens = (b: TextBatch): void => void (tokens += b.attentionMask.reduce((n, r) => n + r.reduce((s, v) => s + v, 0), 0));
  /** column c's texts embedded with its prompt, counting the tokens */
  const embed = (texts: string[], c: number): Tensor => {
    const b = model.tokenize(texts, o.columnPrompts?.[c] ?? '');
    countTokens(b);
    return model.forward(b);
  };
  const columnsOf = (batch: readonly PairExample[]): string[][] => batch[0].texts.map((_, c) => batch.map((x) => x.texts[c]));
  // the full-batch step embeds columns of one padded length in one forward (columns.ts)
  const embedAll = (columns: readonly string[][]): Tensor[] => embedColumns(model, columns, o.columnPrompts, countTokens);
  return {
    accumulate(micro, opts) {
      let total = 0;
      tokens = 0;
      for (const batch of micro) {
        const columns = columnsOf(batch);
        // each micro-batch's mean loss weighs 1 / micro.length of the step (and the fp16 loss scale)
        const weight = (opts.lossScale ?? 1) / micro.length;
        const loss = (e: Tensor[]): Tensor => {
          const l = batchLoss(cfg, e, batch, t.log_scale);
          return weight === 1 ? l : mul(l, weight);
        };
        const check = opts.beforeBackward;
        const before = tokens;
        const value = autocast(opts.autocast ?? null, () => (o.gradCacheChunk ? gradCacheBackward(columns, embed, loss, o.gradCacheChunk, check) : fullBatchBackward(columns, embed, loss, check, embedAll)));
        // GradCache tokenizes every chunk twice (cache pass, then re-forward): the input tokens are half of what it counted
        if (o.gradCacheChunk) tokens = before + (tokens - before) / 2;
        total += value / weight / micro.length;
      }
      return { loss: total, tokens };
    },
    // the Trainer runs this on evalData every evalEvery steps and logs it in eval.jsonl (eval_ prefix)
    evaluate(batches) {
      const all = [...batches];
      let sum = 0;
      // no gradients: the weights are rounded (under autocast) once for all the evaluation batches
      noGrad(() => withWeightCache(() => {
        for (const batch of all) sum += tidy(() => item(batchLoss(cfg, embedAll(columnsOf(batch)), batch, t.log_scale)));
      }));
      const examples = all.flat();
      return { loss: sum / Math.max(all.length, 1), metrics: o.evaluator ? o.evaluator(examples) : evalMetrics(model, examples, o.columnPrompts) };
    },
  };
}
