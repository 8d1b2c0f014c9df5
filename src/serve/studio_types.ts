// The JSON the Studio's endpoints answer with: one set of types for the server (src/serve) and the
// web app (studio/), which imports them as types only, so nothing of the server enters the bundle.

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
}

/** GET /api/studio/jobs/metrics?id=&from=: metrics.jsonl lines from `from` on */
export interface JobMetrics {
  job: JobInfo;
  points: { step: number; loss: number; lr: number; grad_norm: number; tokens_per_sec: number; mem_peak: { total: number } }[];
  /** the `from` to ask with next */
  next: number;
}

/** One suggested sampling setting and why it has that value */
export interface SuggestedParam {
  name: 'temperature' | 'top_p' | 'top_k' | 'min_p' | 'repetition_penalty';
  value: number;
  reason: string;
}
