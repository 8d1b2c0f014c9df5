// The JSON the Studio's endpoints answer with: one set of types for the server (src/serve) and the
// web app (studio/), which imports them as types only, so nothing of the server enters the bundle.
import type { MemoryCounts } from '../tensor/memory_types.js';

export interface ModelFolderInfo {
  /** the folder's name under --models: what the client sends back to load it */
  name: string;
  /** config.json's model_type (llama, qwen2, gpt2, ...) */
  family: string;
  /** bytes of the weight files on disk */
  sizeBytes: number;
  /** config.json's torch_dtype, else the first tensor's safetensors dtype */
  dtype: string;
  contextLength: number | null;
  /** where the chat template comes from; null when the folder ships none (a built-in is detected on load) */
  templateSource: 'chat_template.jinja' | 'tokenizer_config.json' | 'tokenizer.chat_template' | null;
  /** sampling settings to start from, each with its reason (suggested_params.ts) */
  suggested: SuggestedParam[];
}

/** A folder that could not be described (its config.json is broken, ...). */
export interface BrokenModelFolder {
  name: string;
  error: string;
}

/** GET /api/studio/models */
export interface ModelListing {
  models: ((ModelFolderInfo | BrokenModelFolder) & { loaded: boolean; memoryBytes: number | null })[];
  /**
   * served models that are no folder of their own: fine-tuned adapters over a loaded base (base: that
   * model) and quantized copies of a folder, NAME@bf16|int8|q4 (base: the folder)
   */
  derived: { name: string; base: string; memoryBytes: number | null }[];
}

/** GET /api/studio/template?name= */
export interface TemplateInfo {
  source: 'chat_template.jinja' | 'tokenizer_config.json' | `built-in ${string}`;
  template: string;
  /** the tokenizer's special tokens, for the preview to mark */
  specialTokens: string[];
}

/** POST /api/studio/template/preview: the rendered prompt, or the template's error and its 1-based line */
export type TemplatePreview = { prompt: string; tokens: number; specialTokens: string[] } | { error: { message: string; line: number } };

/** POST /api/studio/datasets: an uploaded JSONL file, stored under a generated name */
export interface DatasetInfo {
  id: string;
  rows: number;
  /** the first rows as parsed */
  preview: unknown[];
}

/** POST /api/studio/datasets/preview: the first rows as the model reads them, split into trained and prompt-only spans */
export interface DatasetPreview {
  /** the data format detected from the first row (text, alpaca, chat, sharegpt, pretokenized) */
  format: string;
  rows: { tokens: number; spans: { text: string; trained: boolean }[] }[];
}

/** A `kestrel finetune` job the Studio started */
export interface JobInfo {
  id: string;
  model: string;
  method: string;
  maxSteps: number;
  status: 'running' | 'finished' | 'failed' | 'stopped';
  exitCode: number | null;
  /** the end of its stderr when it failed */
  error: string | null;
  started: number;
  /** how many times its process was started (1, then +1 per resume: the page restarts its curves) */
  runs: number;
  /** the steps of its complete checkpoint-N folders */
  checkpoints: number[];
}

/** GET /api/studio/jobs/metrics?id=&from=: metrics.jsonl lines from `from` on */
export interface JobMetrics {
  job: JobInfo;
  points: { step: number; loss: number; lr: number; grad_norm: number; tokens_per_sec: number; mem_peak: MemoryByTag }[];
  /** eval.jsonl, whole */
  evals: { step: number; eval_loss: number }[];
  /** the `from` to ask with next */
  next: number;
}

/** Peak bytes by k.memory tag, as the trainer logs them */
export type MemoryByTag = MemoryCounts;

/** POST /api/studio/jobs/use, /merge: the name the result is served or listed under */
export interface JobResult {
  name: string;
  /** the folder under --models it was written to (merge), else null */
  folder: string | null;
}

/** One suggested sampling setting and why it has that value */
export interface SuggestedParam {
  name: 'temperature' | 'top_p' | 'top_k' | 'min_p' | 'repetition_penalty';
  value: number;
  reason: string;
}
