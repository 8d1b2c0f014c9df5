// The decoder with a sequence-classification head: HF's *ForSequenceClassification (transformers
// 4.44 modeling_llama.py LlamaForSequenceClassification, the same for Mistral, Qwen2, Gemma, ...):
// a bias-free `score` Linear [num_labels, D] read at one position per row. A reward model is this
// with num_labels 1 (TRL's RewardTrainer, DeepSpeed-Chat's step 2).
import { tensor } from '../ops/creation.js';
import { indexSelect } from '../ops/indexing.js';
import { to } from '../ops/elementwise.js';
import { toArray } from '../ops/transfer.js';
import { reshape } from '../ops/view.js';
import { shapeStr } from '../tensor/layout.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { Linear } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import type { InitOpts } from '../nn/init.js';
import type { DecoderConfig } from './config.js';
import { type Checkpointing, DecoderModel } from './decoder.js';
import { initHfWeights } from './causal_lm.js';
import { ConfigReader, type Json } from './families/hf_config.js';

export interface SequenceClassificationInput {
  /** int64 [B, T] */
  inputIds: Tensor;
  /** [B, T], 1 = attend, 0 = padding */
  attentionMask?: Tensor | null;
  positionIds?: Tensor | null;
}

export interface SequenceClassificationOutput {
  /** float32 [B, numLabels]: the scores (a reward model's reward is logits[:, 0]) */
  logits: Tensor;
}

/** True for an `architectures` entry this class loads (LlamaForSequenceClassification, Qwen2ForSequenceClassification, ...). */
export const isSequenceClassification = (raw: Json): boolean =>
  Array.isArray(raw.architectures) && typeof raw.architectures[0] === 'string' && raw.architectures[0].endsWith('ForSequenceClassification');

/**
 * num_labels as transformers' PretrainedConfig derives it: `num_labels` if given, else the size of
 * id2label, else 2 (its default).
 */
export function numLabelsOf(raw: Json, file: string): number {
  const r = new ConfigReader(raw, file);
  if (r.has('num_labels')) return r.size('num_labels', 1 << 20);
  const id2label = raw.id2label;
  if (id2label && typeof id2label === 'object' && !Array.isArray(id2label)) {
    const n = Object.keys(id2label).length;
    if (n > 0) return n;
  }
  return 2;
}

/**
 * The position each row is read at, as transformers 4.44 picks it: the token before the first
 * pad_token_id in input_ids, modulo T (a row without padding -> T - 1; left padding, whose first
 * pad is at 0, also -> T - 1). The attention mask plays no part, as in HF.
 * @example pooledPositions([[5, 6, 0, 0], [5, 6, 7, 8]], 0) // [1, 3]
 */
export function pooledPositions(ids: readonly (readonly number[])[], padTokenId: number | null): number[] {
  if (padTokenId === null) {
    if (ids.length !== 1) throw new Error(`sequence classification: config has no pad_token_id, so a batch of ${ids.length} rows cannot tell where each ends (HF: batch size 1 only); set pad_token_id`);
    return [ids[0].length - 1];
  }
  return ids.map((row) => {
    const first = row.indexOf(padTokenId);
    return ((first === -1 ? 0 : first) - 1 + row.length) % row.length;
  });
}

/**
 * A decoder that scores whole sequences.
 * @example
 * const { model } = await k.loadPretrained('./llama-rm'); // architectures: LlamaForSequenceClassification
 * const { logits } = model.forward({ inputIds, attentionMask }); // [B, num_labels]
 */
export class DecoderForSequenceClassification extends Module {
  model: DecoderModel;
  score: Linear;
  /** applies to training forwards (grad enabled), as CausalLM's */
  checkpointing: Checkpointing = 'none';

  constructor(readonly config: DecoderConfig, readonly numLabels: number, init: InitOpts = {}) {
    super();
    if (!(Number.isInteger(numLabels) && numLabels >= 1)) throw new Error(`DecoderForSequenceClassification: numLabels must be an integer >= 1, got ${numLabels}`);
    this.model = new DecoderModel(config, init);
    this.score = new Linear(config.hiddenSize, numLabels, { ...init, bias: false });
    initHfWeights(this, config.initializerRange, init);
  }

  override dispose(): void {
    this.model.releaseRotaryCache();
    super.dispose();
  }

  forward(input: SequenceClassificationInput): SequenceClassificationOutput {
    const ids = input.inputIds;
    if (ids.ndim !== 2) throw new Error(`DecoderForSequenceClassification.forward: inputIds must be [batch, seq], got ${shapeStr(ids.shape)}`);
    const [B, T] = ids.shape;
    const at = pooledPositions(toArray(ids) as number[][], this.config.padTokenId);
    return tidy(() => {
      const { hidden } = this.model.forward(input, this.checkpointing);
      // only the B pooled rows go through the head (HF scores every position, then gathers: the same numbers)
      const rows = tensor(at.map((t, b) => b * T + t), { dtype: 'int64', backend: ids.backendName });
      const pooled = indexSelect(reshape(hidden, [B * T, this.config.hiddenSize]), 0, rows); // [B, D]
      return { logits: to(this.score.forward(pooled), 'float32') };
    });
  }

  /**
   * The head at every position, float32 [B, T, numLabels] (HF's score(hidden_states) before it
   * picks one row each): a PPO critic's value of every prefix, or a reward read at a position the
   * caller knows (the last token of a left-padded rollout, where the pad rule cannot find it).
   * @example const values = critic.tokenLogits({ inputIds, attentionMask, positionIds }) // [B, T, 1]
   */
  tokenLogits(input: SequenceClassificationInput): Tensor {
    if (input.inputIds.ndim !== 2) throw new Error(`DecoderForSequenceClassification.tokenLogits: inputIds must be [batch, seq], got ${shapeStr(input.inputIds.shape)}`);
    return tidy(() => to(this.score.forward(this.model.forward(input, this.checkpointing).hidden), 'float32'));
  }
}
