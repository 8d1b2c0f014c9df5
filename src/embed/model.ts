// A sentence embedding model (sentence-transformers' SentenceTransformer): a backbone's token
// embeddings (BERT's last hidden state, or a decoder's final-norm hidden state) -> pooling ->
// optional Dense -> optional L2 normalisation, with the tokenizer, the instruction prompts
// (E5's "query: ", BGE/GTE task prompts) and the maximum sequence length that go with it.
import { tensor } from '../ops/creation.js';
import { unary } from '../ops/elementwise.js';
import { Linear } from '../nn/layers.js';
import { Module } from '../nn/module.js';
import type { InitOpts } from '../nn/init.js';
import { BertModel } from '../models/bert.js';
import type { CausalLM } from '../models/causal_lm.js';
import { DecoderBaseModel } from '../models/base_model.js';
import type { Gpt2LMHeadModel } from '../models/gpt2.js';
import { DecoderForSequenceClassification } from '../models/seq_cls.js';
import { type AnyModel, isSpeechModel } from '../models/registry.js';
import { tidy } from '../tensor/scope.js';
import type { Tensor } from '../tensor/tensor.js';
import { type PoolingSpec, pool, poolingModes } from './pooling.js';
import { l2Normalize } from './similarity.js';

/** An encoder, a causal LM (its final-norm hidden state) or a headless decoder base model (LlamaModel, Qwen2Model, ...). */
export type Backbone = BertModel | CausalLM | Gpt2LMHeadModel | DecoderBaseModel;

/** The loaded model as an embedding backbone; a classification head (a reward model) or a speech model is refused by name. */
export function asBackbone(model: AnyModel, where: string): Backbone {
  if (model instanceof DecoderForSequenceClassification)
    throw new Error(`${where}: a *ForSequenceClassification model is not an embedding backbone (load its base model, a BERT or causal LM folder)`);
  if (isSpeechModel(model)) throw new Error(`${where}: ${model.constructor.name} is a speech model, not a text embedding backbone (a BERT or causal LM folder)`);
  return model;
}

/** What the model needs of a tokenizer (a k.Tokenizer has it). */
export interface TextTokenizer {
  encode(text: string): number[];
  readonly padTokenId: number | null;
  readonly eosTokenId: number | null;
}

/** sentence-transformers' Dense: y = act(x Wᵀ + b), weights under `linear.` as it saves them. */
export class Dense extends Module {
  linear: Linear;
  constructor(inFeatures: number, outFeatures: number, readonly activation: 'tanh' | 'identity', opts: InitOpts & { bias?: boolean } = {}) {
    super();
    this.linear = new Linear(inFeatures, outFeatures, opts);
  }
  forward(x: Tensor): Tensor {
    const y = this.linear.forward(x);
    return this.activation === 'tanh' ? unary('tanh', y) : y;
  }
}

export interface EmbedderSettings {
  /** one mode, or several concatenated in sentence-transformers' order */
  pooling: PoolingSpec;
  /** false: prompt tokens are left out of the pooling (include_prompt) */
  includePrompt: boolean;
  normalize: boolean;
  /** texts are cut to this many tokens (sentence_bert_config.json max_seq_length) */
  maxSeqLength: number;
  doLowerCase: boolean;
  /** prompt name -> the text put before each input (config_sentence_transformers.json) */
  prompts: Record<string, string>;
  defaultPromptName: string | null;
  similarityFnName: 'cosine' | 'dot' | 'euclidean' | 'manhattan';
  /** which side the batches are padded on (tokenizer_config.json padding_side; default right) */
  paddingSide: 'left' | 'right';
}

export const DEFAULT_SETTINGS: EmbedderSettings = {
  pooling: 'mean', includePrompt: true, normalize: false, maxSeqLength: 512, doLowerCase: false,
  prompts: {}, defaultPromptName: null, similarityFnName: 'cosine', paddingSide: 'right',
};

/** A tokenized, padded batch. */
export interface TextBatch {
  inputIds: number[][];
  attentionMask: number[][];
  /** tokens of the prompt at the start of each row (for includePrompt: false) */
  promptLength: number;
  /** BERT's segment ids (default all 0: one sentence per row, as the tokenizer gives) */
  tokenTypeIds?: number[][];
}

/**
 * A backbone with pooling, an optional Dense layer and normalisation.
 * @example const emb = new SentenceEmbedder(bert, tokenizer, { pooling: 'cls', normalize: true }); emb.embed(['hello'])
 */
export class SentenceEmbedder extends Module {
  readonly settings: EmbedderSettings;
  /** the folder the backbone came from and its config.json (saving writes them back with the new weights) */
  source: { dir: string; hfConfig: Record<string, unknown> } | null = null;
  constructor(readonly backbone: Backbone, readonly tokenizer: TextTokenizer, settings: Partial<EmbedderSettings> = {}, public dense: Dense | null = null) {
    super();
    this.settings = { ...DEFAULT_SETTINGS, ...settings };
  }

  /** The backbone's hidden size (the pooled width before Dense). */
  get hiddenSize(): number { return this.backbone.config.hiddenSize; }
  /** The pooled width: the hidden size times the number of pooling modes (before Dense). */
  get pooledSize(): number { return this.hiddenSize * poolingModes(this.settings.pooling).length; }
  /** The output embedding width. */
  get dim(): number { return this.dense ? this.dense.linear.outFeatures : this.pooledSize; }

  /** The prompt text of a name (an error lists the known ones), or '' for none. */
  promptText(name: string | null | undefined): string {
    const n = name ?? this.settings.defaultPromptName;
    if (n === null || n === undefined) return '';
    if (!Object.hasOwn(this.settings.prompts, n)) throw new Error(`prompt '${n}' is not one of the model's prompts [${Object.keys(this.settings.prompts).join(', ')}]`);
    return this.settings.prompts[n];
  }

  /** Token ids cut to maxSeqLength; a cut row keeps its final special token (the [SEP] / EOS the tokenizer appended). */
  private ids(text: string): number[] {
    const ids = this.tokenizer.encode(this.settings.doLowerCase ? text.toLowerCase() : text);
    const max = this.settings.maxSeqLength;
    if (ids.length <= max) return ids;
    const plain = this.tokenizer.encode('');
    const tail = plain.length && plain.at(-1) === ids.at(-1) ? [ids.at(-1)!] : [];
    return [...ids.slice(0, max - tail.length), ...tail];
  }

  /** Tokenizes prompt + text for each text and pads to the longest row on settings.paddingSide. */
  tokenize(texts: readonly string[], prompt = ''): TextBatch {
    const { rows, promptLength } = this.tokenRows(texts, prompt);
    return this.pad(rows, promptLength);
  }

  /**
   * prompt + text as token ids for each text, unpadded, and the prompt's length as pooling counts it
   * (tokenize is pad(tokenRows(...))).
   */
  tokenRows(texts: readonly string[], prompt = ''): { rows: number[][]; promptLength: number } {
    if (texts.length === 0) throw new Error('tokenize: no texts');
    if (!this.settings.includePrompt && prompt && this.settings.paddingSide === 'left')
      throw new Error('tokenize: include_prompt false needs right padding (the prompt must start every row at position 0)');
    // the tokens before the text, as sentence-transformers counts them: the prompt's ids less one (its trailing special token)
    const promptLength = prompt && !this.settings.includePrompt ? this.ids(prompt).length - 1 : 0;
    return { rows: texts.map((t) => this.ids(prompt + t)), promptLength };
  }

  /** Token rows padded to the longest on settings.paddingSide, with the attention mask. */
  pad(rows: readonly number[][], promptLength: number): TextBatch {
    const left = this.settings.paddingSide === 'left';
    const T = Math.max(...rows.map((r) => r.length));
    const pad = this.tokenizer.padTokenId ?? this.tokenizer.eosTokenId ?? 0;
    const fill = (r: readonly number[], v: (i: number) => number): number[] => {
      const extra = new Array<number>(T - r.length).fill(v(-1));
      return left ? [...extra, ...r.map((_, i) => v(i))] : [...r.map((_, i) => v(i)), ...extra];
    };
    return {
      inputIds: rows.map((r) => fill(r, (i) => (i < 0 ? pad : r[i]))),
      attentionMask: rows.map((r) => fill(r, (i) => (i < 0 ? 0 : 1))),
      promptLength,
    };
  }

  /** Final hidden states [B, T, D] of the backbone. */
  private tokenStates(batch: TextBatch): Tensor {
    const backend = this.backbone.parameters()[0]?.backendName;
    const ids = tensor(batch.inputIds, { dtype: 'int64', backend });
    // a batch without padding needs no mask: attention then reads and adds none
    const mask = batch.attentionMask.every((r) => r.every((v) => v === 1)) ? null : tensor(batch.attentionMask, { dtype: 'int64', backend });
    const m = this.backbone;
    if (m instanceof BertModel) {
      const tokenTypeIds = batch.tokenTypeIds ? tensor(batch.tokenTypeIds, { dtype: 'int64', backend }) : null;
      return m.forward({ inputIds: ids, attentionMask: mask, tokenTypeIds }).lastHiddenState;
    }
    if (m instanceof DecoderBaseModel) return m.forward({ inputIds: ids, attentionMask: mask }).hidden;
    return m.forward({ inputIds: ids, attentionMask: mask, outputHiddenStates: true, returnLogits: false }).hiddenStates.at(-1)!;
  }

  /**
   * Sentence embeddings [B, dim] of a tokenized batch (autograd records it when gradients are on).
   * @example const e = model.forward(model.tokenize(['a cat', 'a dog']))
   */
  forward(batch: TextBatch): Tensor {
    return tidy(() => {
      let e = pool(this.tokenStates(batch), batch.attentionMask, this.settings.pooling, { promptLength: batch.promptLength });
      if (this.dense) e = this.dense.forward(e);
      return this.settings.normalize ? l2Normalize(e) : e;
    });
  }

  /** Embeddings of texts (one batch), with a prompt name's text put before each. */
  embed(texts: readonly string[], promptName?: string | null): Tensor {
    return this.forward(this.tokenize(texts, this.promptText(promptName)));
  }
}
