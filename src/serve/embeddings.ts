// POST /v1/embeddings: mean-pooled, unit-length decoder hidden states (a SentenceEmbedder with mean
// pooling and normalisation, src/embed) for each
// input (a string, token ids, or lists of either), as float lists or, with encoding_format
// 'base64' (what the openai client asks for by default), little-endian float32 bytes in base64.
import { SentenceEmbedder } from '../embed/model.js';
import { toFloat32Array } from '../ops/transfer.js';
import { noGrad } from '../tensor/grad_mode.js';
import { tidy } from '../tensor/scope.js';
import { activeAdapter, setAdapter } from '../lora/peft.js';
import { BodyFields } from './body_fields.js';
import { invalid } from './errors.js';
import type { ModelRegistry, ServedModel } from './model_registry.js';
import { promptIds } from './prompts.js';
import { servedModel } from './request_params.js';

/** Most inputs one request may embed. */
const MAX_INPUTS = 64;

export interface EmbeddingParams {
  served: ServedModel;
  inputs: number[][];
  base64: boolean;
}

export function embeddingParams(body: unknown, models: ModelRegistry): EmbeddingParams {
  const f = new BodyFields(body);
  const served = servedModel(f, models);
  const inputs = promptIds(f, served, 'input');
  if (inputs.length > MAX_INPUTS) throw invalid(`'input' holds ${inputs.length} inputs; at most ${MAX_INPUTS} per request`, 'input');
  inputs.forEach((ids, i) => {
    const at = inputs.length > 1 ? `input[${i}]` : 'input';
    if (!ids.length) throw invalid(`'${at}' is empty after tokenization`, at);
    if (ids.length > served.contextLength) throw invalid(`'${at}' has ${ids.length} tokens; this model's maximum context length is ${served.contextLength}`, at);
  });
  const format = f.string('encoding_format') ?? 'float';
  if (format !== 'float' && format !== 'base64') throw invalid(`'encoding_format' must be 'float' or 'base64', got '${format}'`, 'encoding_format');
  if (f.has('dimensions')) throw invalid(`'dimensions' is not supported: the embedding has the model's hidden size`, 'dimensions');
  return { served, inputs, base64: format === 'base64' };
}

/**
 * The embeddings response. Each forward runs synchronously, so no generation step interleaves:
 * the adapter is switched for these forwards and switched back before anything else runs.
 */
export function embeddingResponse(p: EmbeddingParams): unknown {
  const model = p.served.pretrained.model;
  const before = activeAdapter(model);
  if (before !== undefined) setAdapter(model, p.served.adapter);
  let vectors: Float32Array[];
  try {
    const embedder = new SentenceEmbedder(model, p.served.tokenizer, { pooling: 'mean', normalize: true });
    vectors = p.inputs.map((ids) => noGrad(() => tidy(() =>
      toFloat32Array(embedder.forward({ inputIds: [ids], attentionMask: [ids.map(() => 1)], promptLength: 0 })))));
  } finally {
    if (before !== undefined) setAdapter(model, before);
  }
  const tokens = p.inputs.reduce((s, ids) => s + ids.length, 0);
  return {
    object: 'list',
    model: p.served.id,
    data: vectors.map((v, index) => ({
      object: 'embedding', index,
      embedding: p.base64 ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : Array.from(v),
    })),
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
}
