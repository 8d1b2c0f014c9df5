// The Studio's own endpoints, beside the OpenAI ones on the same server: the model folders under
// --models with what each is (and whether it is loaded, and the bytes it holds), load and unload,
// and the chat-template page's template / preview / save. Chat and the arena use
// /v1/chat/completions itself. Every body is validated and every folder is named, never a path.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { memory } from '../tensor/memory.js';
import { BodyFields } from './body_fields.js';
import type { Engine } from './engine.js';
import { ApiError } from './errors.js';
import { readJsonBody, sendJson } from './http_io.js';
import { listModelFolders, modelFolderPath } from './model_folders.js';
import type { ModelRegistry } from './model_registry.js';
import type { ModelListing } from './studio_types.js';
import { chatMessages } from './prompts.js';
import { previewTemplate, saveTemplate, templateInfo } from './studio_templates.js';

export interface StudioApiOptions {
  /** the folder whose subfolders are the models */
  modelsDir: string;
  models: ModelRegistry;
  engine: Engine;
  maxBodyBytes: number;
}

export const STUDIO_ROUTES = {
  'GET /api/studio/models': 'studio-models',
  'POST /api/studio/models/load': 'studio-load',
  'POST /api/studio/models/unload': 'studio-unload',
  'GET /api/studio/template': 'studio-template',
  'POST /api/studio/template/preview': 'studio-preview',
  'POST /api/studio/template/save': 'studio-save',
} as const;

type StudioRoute = (typeof STUDIO_ROUTES)[keyof typeof STUDIO_ROUTES];

/** Bytes each loaded model added to live storage when it loaded (read from the memory counters). */
const loadedBytes = new Map<string, number>();

function listing(o: StudioApiOptions): ModelListing {
  const loaded = new Set(o.models.list().map((m) => m.id));
  return { models: listModelFolders(o.modelsDir).map((m) => ({ ...m, loaded: loaded.has(m.name), memoryBytes: loadedBytes.get(m.name) ?? null })) };
}

async function load(o: StudioApiOptions, name: unknown): Promise<unknown> {
  const dir = modelFolderPath(o.modelsDir, name);
  const id = name as string;
  if (o.models.get(id)) return { name: id, loaded: true, memoryBytes: loadedBytes.get(id) ?? null };
  const before = memory.stats().current.total;
  try {
    await o.models.loadFolder(id, dir);
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
  o.models.remove(id);
  loadedBytes.delete(id);
  return { name: id, loaded: false };
}

function queryName(req: IncomingMessage): string | null {
  return new URL(req.url ?? '/', 'http://studio').searchParams.get('name');
}

/** Answers one Studio route (the caller has checked host, origin and token). */
export async function handleStudio(route: StudioRoute, req: IncomingMessage, res: ServerResponse, o: StudioApiOptions): Promise<void> {
  if (route === 'studio-models') return sendJson(res, 200, listing(o));
  if (route === 'studio-template') return sendJson(res, 200, await templateInfo(modelFolderPath(o.modelsDir, queryName(req))));
  const f = new BodyFields(await readJsonBody(req, o.maxBodyBytes));
  if (route === 'studio-load') return sendJson(res, 200, await load(o, f.body.name));
  if (route === 'studio-unload') return sendJson(res, 200, unload(o, f.body.name));
  const dir = modelFolderPath(o.modelsDir, f.body.name);
  const template = f.requiredString('template');
  const messages = chatMessages(f);
  if (route === 'studio-preview') return sendJson(res, 200, await previewTemplate(dir, template, messages));
  return sendJson(res, 200, await saveTemplate(dir, template, messages));
}
