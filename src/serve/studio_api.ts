// The Studio's own endpoints, beside the OpenAI ones on the same server: the model folders under
// --models with what each is (and whether it is loaded, and the bytes it holds), load and unload,
// the chat-template page's template / preview / save, and dataset uploads and fine-tuning jobs
// (training_jobs.ts). Chat and the arena use
// /v1/chat/completions itself. Every body is validated and every folder is named, never a path.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { INFERENCE_QUANTS, type InferenceQuant } from '../quant/quantize_model.js';
import { memory } from '../tensor/memory.js';
import { BodyFields } from './body_fields.js';
import type { Engine } from './engine.js';
import { ApiError, invalid } from './errors.js';
import { readBody, readJsonBody, sendJson } from './http_io.js';
import { listModelFolders, modelFolderPath } from './model_folders.js';
import type { ModelRegistry } from './model_registry.js';
import type { ModelListing } from './studio_types.js';
import { chatMessages } from './prompts.js';
import { previewTemplate, saveTemplate, templateInfo, tokenizerOf } from './studio_templates.js';
import { previewDataset } from './dataset_preview.js';
import { JobResults } from './job_results.js';
import type { TrainingJobs } from './training_jobs.js';

export interface StudioApiOptions {
  /** the folder whose subfolders are the models */
  modelsDir: string;
  models: ModelRegistry;
  engine: Engine;
  maxBodyBytes: number;
  jobs: TrainingJobs;
  /** largest dataset upload (413 beyond) */
  maxUploadBytes: number;
}

export const STUDIO_ROUTES = {
  'GET /api/studio/models': 'studio-models',
  'POST /api/studio/models/load': 'studio-load',
  'POST /api/studio/models/unload': 'studio-unload',
  'GET /api/studio/template': 'studio-template',
  'POST /api/studio/template/preview': 'studio-preview',
  'POST /api/studio/template/save': 'studio-save',
  'POST /api/studio/tokens': 'studio-tokens',
  'POST /api/studio/datasets': 'studio-upload',
  'GET /api/studio/jobs': 'studio-jobs',
  'POST /api/studio/jobs': 'studio-start',
  'GET /api/studio/jobs/metrics': 'studio-metrics',
  'POST /api/studio/jobs/stop': 'studio-stop',
  'POST /api/studio/jobs/resume': 'studio-resume',
  'POST /api/studio/jobs/use': 'studio-use',
  'POST /api/studio/jobs/merge': 'studio-merge',
  'POST /api/studio/jobs/export': 'studio-export',
  'POST /api/studio/datasets/preview': 'studio-dataset-preview',
} as const;

type StudioRoute = (typeof STUDIO_ROUTES)[keyof typeof STUDIO_ROUTES];

/** Bytes each loaded model added to live storage when it loaded (read from the memory counters). */
const loadedBytes = new Map<string, number>();

function listing(o: StudioApiOptions): ModelListing {
  const served = o.models.list();
  const loaded = new Set(served.map((m) => m.id));
  const folders = listModelFolders(o.modelsDir);
  const names = new Set(folders.map((m) => m.name));
  // an adapter's base is the served model that shares its weights and runs no adapter; a quantized
  // copy's is the folder it was loaded from
  const baseOf = (m: (typeof served)[number]) => m.adapter !== null
    ? served.find((b) => b.adapter === null && b.pretrained === m.pretrained)?.id ?? m.id
    : folders.find((f) => join(o.modelsDir, f.name) === m.dir)?.name ?? m.id;
  return {
    models: folders.map((m) => ({ ...m, loaded: loaded.has(m.name), memoryBytes: loadedBytes.get(m.name) ?? null })),
    derived: served.filter((m) => !names.has(m.id)).map((m) => ({ name: m.id, base: baseOf(m), memoryBytes: loadedBytes.get(m.id) ?? null })),
  };
}

/** Loads a folder (quantized for inference with `quant`: served as NAME@QUANT beside the float one). */
async function load(o: StudioApiOptions, name: unknown, quant: unknown): Promise<unknown> {
  const dir = modelFolderPath(o.modelsDir, name);
  if (quant !== undefined && (typeof quant !== 'string' || !(INFERENCE_QUANTS as readonly string[]).includes(quant)))
    throw invalid(`'quant' must be one of ${INFERENCE_QUANTS.join(', ')}, got ${JSON.stringify(quant)}`, 'quant');
  const q = quant as InferenceQuant | undefined;
  const id = q ? `${name as string}@${q}` : (name as string);
  if (o.models.get(id)) return { name: id, loaded: true, memoryBytes: loadedBytes.get(id) ?? null };
  const before = memory.stats().current.total;
  try {
    await o.models.loadFolder(id, dir, '', undefined, q);
  } catch (e) {
    throw new ApiError(400, `cannot load '${id}': ${(e as Error).message}`, 'name', 'load_failed');
  }
  loadedBytes.set(id, memory.stats().current.total - before);
  return { name: id, loaded: true, memoryBytes: loadedBytes.get(id) };
}

function unload(o: StudioApiOptions, name: unknown): unknown {
  const id = typeof name === 'string' ? name : '';
  if (!o.models.get(id)) throw new ApiError(404, `no loaded model named ${JSON.stringify(name)}`, 'name', 'model_not_found');
  // the engine's running job holds the model's weights; freeing them under it would break it
  const { queued, running } = o.engine.stats();
  if (queued + running > 0) throw new ApiError(409, `'${id}' cannot be unloaded while ${queued + running} generation(s) run or wait; stop them first`, 'name', 'busy');
  const served = o.models.get(id)!;
  if (served.adapter !== null) {
    const base = o.models.list().find((b) => b.adapter === null && b.pretrained === served.pretrained)?.id;
    throw new ApiError(409, `'${id}' is an adapter served over '${base}'; unloading '${base}' unloads it too`, 'name', 'adapter');
  }
  o.engine.releaseModel?.(served.pretrained.model);
  o.models.remove(id);
  loadedBytes.delete(id);
  return { name: id, loaded: false };
}

/** How many tokens a loaded model's tokenizer makes of a text (the chat page's file chips). */
function countTokens(o: StudioApiOptions, f: BodyFields): { tokens: number } {
  const model = f.requiredString('model');
  const served = o.models.get(model);
  if (!served) throw new ApiError(404, `no loaded model named '${model}'`, 'model', 'model_not_found');
  return { tokens: served.tokenizer.encode(f.requiredString('text'), { addSpecialTokens: false }).length };
}

function query(req: IncomingMessage, key: string): string | null {
  return new URL(req.url ?? '/', 'http://studio').searchParams.get(key);
}

/** The training-job routes. */
async function handleJobs(route: StudioRoute, req: IncomingMessage, res: ServerResponse, o: StudioApiOptions): Promise<void> {
  if (route === 'studio-upload') return sendJson(res, 200, o.jobs.saveDataset(await readBody(req, o.maxUploadBytes, 413)));
  if (route === 'studio-jobs') return sendJson(res, 200, { jobs: o.jobs.list() });
  if (route === 'studio-metrics') {
    const from = Number(query(req, 'from') ?? 0);
    if (!Number.isInteger(from) || from < 0) throw invalid(`'from' must be an integer >= 0, got ${JSON.stringify(query(req, 'from'))}`, 'from');
    return sendJson(res, 200, o.jobs.metrics(query(req, 'id'), from));
  }
  const f = new BodyFields(await readJsonBody(req, o.maxBodyBytes));
  if (route === 'studio-start') return sendJson(res, 200, o.jobs.start(f.body));
  if (route === 'studio-dataset-preview') {
    const tok = await tokenizerOf(modelFolderPath(o.modelsDir, f.body.model));
    return sendJson(res, 200, previewDataset(o.jobs.datasetPath(f.body.dataset), tok));
  }
  const results = new JobResults(o.jobs, o.models, o.modelsDir);
  if (route === 'studio-resume') return sendJson(res, 200, o.jobs.resume(f.body.id));
  if (route === 'studio-use') return sendJson(res, 200, await results.use(f.body.id));
  if (route === 'studio-merge') return sendJson(res, 200, await results.merge(f.body.id));
  if (route === 'studio-export') return sendJson(res, 200, await results.export(f.body.id, f.body.type));
  return sendJson(res, 200, o.jobs.stop(f.body.id));
}

const JOB_ROUTES: ReadonlySet<StudioRoute> = new Set(['studio-upload', 'studio-jobs', 'studio-start', 'studio-metrics', 'studio-stop',
  'studio-resume', 'studio-use', 'studio-merge', 'studio-export', 'studio-dataset-preview']);

/** Answers one Studio route (the caller has checked host, origin and token). */
export async function handleStudio(route: StudioRoute, req: IncomingMessage, res: ServerResponse, o: StudioApiOptions): Promise<void> {
  if (JOB_ROUTES.has(route)) return handleJobs(route, req, res, o);
  if (route === 'studio-models') return sendJson(res, 200, listing(o));
  if (route === 'studio-template') return sendJson(res, 200, await templateInfo(modelFolderPath(o.modelsDir, query(req, 'name'))));
  const f = new BodyFields(await readJsonBody(req, o.maxBodyBytes));
  if (route === 'studio-load') return sendJson(res, 200, await load(o, f.body.name, f.body.quant));
  if (route === 'studio-unload') return sendJson(res, 200, unload(o, f.body.name));
  if (route === 'studio-tokens') return sendJson(res, 200, countTokens(o, f));
  const dir = modelFolderPath(o.modelsDir, f.body.name);
  const template = f.requiredString('template');
  const messages = chatMessages(f);
  if (route === 'studio-preview') return sendJson(res, 200, await previewTemplate(dir, template, messages));
  return sendJson(res, 200, await saveTemplate(dir, template, messages));
}
