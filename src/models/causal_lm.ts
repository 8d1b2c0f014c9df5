// The decoder with its LM head: HF's *ForCausalLM forward (labels shifted inside, -100
// ignored, logits in float32), hidden states, router logits and the MoE auxiliary loss.
import { mul, add, to } from '../ops/elementwise.js';
import { crossEntropy, linearCrossEntropy } from '../ops/loss.js';
import { cat } from '../ops/indexing.js';
import { full } from '../ops/creation.js';
import { narrow, reshape, contiguous } from '../ops/view.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { shapeStr } from '../tensor/layout.js';
import { Linear } from '../nn/layers.js';
import { normal_ } from '../nn/init.js';
import { isMeta } from '../tensor/meta.js';
import { fill_ } from '../ops/inplace.js';
import { noGrad } from '../tensor/grad_mode.js';
import { Module } from '../nn/module.js';
import type { InitOpts } from '../nn/init.js';
import type { DecoderConfig } from './config.js';
import { DecoderModel, lmHead } from './decoder.js';
export { MASK_MIN, paddingMask, type Checkpointing } from './decoder.js';
import type { Checkpointing } from './decoder.js';
import type { KVCache } from './kv_cache.js';
import type { PagedKVCache } from './paged_kv_cache.js';
import { indexSelect } from '../ops/indexing.js';
import { loadBalancingLoss, routerZLoss } from './moe_losses.js';

export interface CausalLMInput {
  /** int64 [B, T] */
  inputIds: Tensor;
  /** [B, past + T], 1 = attend, 0 = padding */
  attentionMask?: Tensor | null;
  /** int64 [B, T]: packed rows' document of each token; attention stays inside a document (block-diagonal causal) */
  documentIds?: Tensor | null;
  /** int64 [B, T]; default past .. past + T - 1 */
  positionIds?: Tensor | null;
  /** int64 [B, T]; shifted inside (logits[:, t] predicts labels[:, t + 1]); -100 is ignored */
  labels?: Tensor | null;
  /** a PagedKVCache (continuous batching) takes the step's tokens as one row with positionIds */
  cache?: KVCache | PagedKVCache | null;
  outputHiddenStates?: boolean;
  /** 'sum' returns the summed token losses (the trainer divides by the tokens of the whole accumulated batch) */
  lossReduction?: 'mean' | 'sum';
  /** compute logits for the last position only (generation: skips the [T, V] head matmul) */
  lastLogitsOnly?: boolean;
  /** int64 [R]: compute logits only at these positions of T (a batched step's last token of each sequence); logits [B, R, V] */
  logitsRows?: Tensor | null;
  /**
   * false: no logits are returned (null). With labels and a plain lm_head (or tied embeddings), the
   * loss then runs through linearCrossEntropy, which never holds the [B, T, V] logits or their
   * gradient (training). Default true.
   */
  returnLogits?: boolean;
  /** add moe.auxLossCoef * auxLoss to the loss (HF's output_router_logits; default the config's) */
  routerAuxLoss?: boolean;
}

export interface CausalLMOutput {
  /** float32 [B, T, V]; null when the input asked for returnLogits: false */
  logits: Tensor | null;
  loss: Tensor | null;
  hiddenStates: Tensor[];
  routerLogits: Tensor[];
  auxLoss: Tensor | null;
  /** ST-MoE's router z-loss when the config weights it (moe.zLossCoef > 0; already in the loss), else null */
  zLoss?: Tensor | null;
}

/** What generation needs of a model: a causal forward with a KV cache, and the cache's shape. */
export interface LanguageModel extends Module {
  readonly config: {
    readonly modelType: string;
    readonly numLayers: number;
    readonly numKvHeads: number;
    readonly headDim: number;
    readonly eosTokenIds: number[];
    readonly padTokenId: number | null;
  };
  forward(input: CausalLMInput): CausalLMOutput;
}

/** The hidden states the head runs on: the rows asked for, the last, or all ([B, T', D]). */
export function headRows(h: Tensor, input: Pick<CausalLMInput, 'lastLogitsOnly' | 'logitsRows'>): Tensor {
  if (input.logitsRows) return indexSelect(h, 1, input.logitsRows);
  return input.lastLogitsOnly ? narrow(h, 1, h.shape[1] - 1, 1) : h;
}

/** HF's _init_weights: every Linear and Embedding weight ~ N(0, std^2), biases 0 (meta parameters are left for loading). */
export function initHfWeights(module: Module, std: number, init: InitOpts): void {
  for (const [name, p] of module.namedParameters()) {
    if (isMeta(p)) continue; // lazy construction: loading gives it values
    if (p.ndim === 2) normal_(p, std, init.generator);
    else if (name.endsWith('.bias')) noGrad(() => fill_(p, 0));
  }
}

export class CausalLM extends Module implements LanguageModel {
  model: DecoderModel;
  lm_head?: Linear;
  /** applies to training forwards (grad enabled, no KV cache); MoE router logits are not kept under 'full' */
  checkpointing: Checkpointing = 'none';

  constructor(readonly config: DecoderConfig, init: InitOpts = {}) {
    super();
    if (config.partialRotaryFactor !== 1) throw new Error(`partial rotary embeddings (factor ${config.partialRotaryFactor}) are not supported yet`);
    this.model = new DecoderModel(config, init);
    if (!config.tieWordEmbeddings) this.lm_head = new Linear(config.hiddenSize, config.vocabSize, { ...init, bias: false });
    initHfWeights(this, config.initializerRange, init);
  }

  override dispose(): void {
    this.model.releaseRotaryCache();
    super.dispose();
  }

  /** The head's [V, D] weight when the head is a plain bias-free Linear or the tied embedding (not LoRA-wrapped or quantized). */
  private plainHeadWeight(): Tensor | null {
    if (!this.lm_head) return this.model.embed_tokens.weight;
    return this.lm_head instanceof Linear && !this.lm_head.bias ? this.lm_head.weight : null;
  }

  /**
   * The LM head on the final hidden state h [B, T, D]: the logits and/or the loss forward asks for.
   * One method so that ZeRO-3 can gather the head's weight (or the tied embedding) around it.
   */
  headForward(h: Tensor, input: CausalLMInput): { logits: Tensor | null; loss: Tensor | null } {
    const c = this.config;
    const [B, T] = input.inputIds.shape;
    const reduction = input.lossReduction ?? 'mean';
    const headWeight = this.plainHeadWeight();
    let logits: Tensor | null = null;
    let loss: Tensor | null = null;
    if (input.returnLogits === false && input.labels && headWeight) {
      // logits[:, t] predicts labels[:, t + 1]; the last position gets the ignored label instead of a narrowed copy of h
      const ignored = full([B, 1], -100, { dtype: 'int64', backend: input.inputIds.backendName });
      const shifted = cat([narrow(to(input.labels, 'int64'), 1, 1, T - 1), ignored], 1);
      loss = linearCrossEntropy(reshape(h, [B * T, c.hiddenSize]), headWeight, reshape(shifted, [B * T]), { reduction, softcap: c.finalSoftcap });
    } else if (input.returnLogits !== false || input.labels) {
      const head = headRows(h, input);
      const all = to(lmHead(this.model, this.lm_head, head, c.finalSoftcap), 'float32');
      if (input.labels) loss = crossEntropy(contiguous(narrow(all, 1, 0, T - 1)), contiguous(narrow(input.labels, 1, 1, T - 1)), { reduction });
      if (input.returnLogits !== false) logits = all;
    }
    return { logits, loss };
  }

  forward(input: CausalLMInput): CausalLMOutput {
    const c = this.config;
    const ids = input.inputIds;
    if (ids.ndim !== 2) throw new Error(`forward: inputIds must be [batch, seq], got ${shapeStr(ids.shape)}`);
    const [B, T] = ids.shape;
    if ((input.lastLogitsOnly || input.logitsRows) && input.labels) throw new Error('forward: lastLogitsOnly cannot be combined with labels (the loss needs every position)');
    return tidy(() => {
      const { hidden: h, hiddenStates, routerLogits } = this.model.forward(input, this.checkpointing);
      if (input.labels && (input.labels.shape[0] !== B || input.labels.shape[1] !== T))
        throw new Error(`forward: labels must be [${B}, ${T}] like inputIds, got ${shapeStr(input.labels.shape)}`);
      // neither logits nor a loss (hidden states only: a decoder as an embedder) runs no head at all, so
      // ZeRO-3 does not gather the head's unit for nothing
      const wantsHead = input.returnLogits !== false || !!input.labels;
      const { logits, loss: headLoss } = wantsHead ? this.headForward(h, input) : { logits: null, loss: null };
      let loss = headLoss;
      // the balancing loss is a training quantity over whole sequences: not computed on cached steps
      const mask = input.attentionMask ?? null;
      const auxLoss = c.moe && routerLogits.length && !input.cache ? loadBalancingLoss(routerLogits, c.moe.numExperts, c.moe.topK, mask) : null;
      if (loss && auxLoss && c.moe && (input.routerAuxLoss ?? c.moe.outputRouterLogits)) loss = add(loss, mul(auxLoss, c.moe.auxLossCoef));
      const zLoss = c.moe && c.moe.zLossCoef > 0 && routerLogits.length && !input.cache ? routerZLoss(routerLogits, mask) : null;
      if (loss && zLoss && c.moe) loss = add(loss, mul(zLoss, c.moe.zLossCoef));
      return { logits, loss, hiddenStates, routerLogits, auxLoss, zLoss };
    });
  }
}

