// The OpenAI-compatible HTTP server on Node's http module: routes, Bearer auth on /v1 (when an
// API key is set), errors as OpenAI's JSON, and /health and Prometheus /metrics. Each request is
// independent: a bad body gets its 4xx and the server keeps serving the rest.
import { type IncomingMessage, type Server, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { memory } from '../tensor/memory.js';
import { type CompletionContext, runCompletion } from './completions.js';
import type { Engine } from './engine.js';
import { embeddingParams, embeddingResponse } from './embeddings.js';
import { ApiError } from './errors.js';
import { readJsonBody, sendError, sendJson } from './http_io.js';
import { ServerMetrics } from './metrics.js';
import type { ModelRegistry } from './model_registry.js';
import { completionParams } from './request_params.js';
import { sendAppFile } from './static_files.js';
import { STUDIO_ROUTES, type StudioApiOptions, handleStudio } from './studio_api.js';
import { type StudioGuardOptions, checkHostAndOrigin } from './studio_guard.js';

export interface ServeOptions {
  models: ModelRegistry;
  engine: Engine;
  /** Bearer token required on /v1/* (null: open) */
  apiKey: string | null;
  /** largest request body accepted, in bytes */
  maxBodyBytes: number;
  /** `kestrel studio`: its API and built app on this same server, behind host/origin checks (apiKey is its token) */
  studio?: { api: StudioApiOptions; guard: StudioGuardOptions; appDir: string };
}

/** What a 429 asks the client to wait: about one short generation. */
const RETRY_AFTER_SECONDS = 1;

const ROUTES: Record<string, 'chat' | 'completion' | 'embeddings' | 'models' | 'health' | 'metrics'> = {
  'POST /v1/chat/completions': 'chat',
  'POST /v1/completions': 'completion',
  'POST /v1/embeddings': 'embeddings',
  'GET /v1/models': 'models',
  'GET /health': 'health',
  'GET /metrics': 'metrics',
};

function listModels(models: ModelRegistry): unknown {
  const base = models.list().find((m) => m.adapter === null);
  return {
    object: 'list',
    data: models.list().map((m) => ({ id: m.id, object: 'model', created: m.created, owned_by: 'kestrel', root: m.dir, parent: m.adapter ? base?.id ?? null : null, max_model_len: m.contextLength })),
  };
}

function checkAuth(req: IncomingMessage, apiKey: string | null): void {
  if (apiKey === null) return;
  if (req.headers.authorization !== `Bearer ${apiKey}`) throw new ApiError(401, 'invalid or missing API key: send Authorization: Bearer <key>', null, 'invalid_api_key');
}

async function handle(req: IncomingMessage, res: ServerResponse, o: ServeOptions, ctx: CompletionContext): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  const key = `${req.method} ${path}`;
  if (o.studio) {
    checkHostAndOrigin(req, o.studio.guard);
    const studioRoute = STUDIO_ROUTES[key as keyof typeof STUDIO_ROUTES];
    if (studioRoute) {
      checkAuth(req, o.apiKey);
      return handleStudio(studioRoute, req, res, o.studio.api);
    }
    // everything else that is no API path is the app (its files, or index.html for its routes)
    if (req.method === 'GET' && !ROUTES[key] && !/^\/(v1|api)\//.test(path)) return sendAppFile(res, o.studio.appDir, path);
  }
  const route = ROUTES[key];
  if (!route) {
    const known = [...Object.keys(ROUTES), ...(o.studio ? Object.keys(STUDIO_ROUTES) : [])].some((r) => r.endsWith(` ${path}`));
    throw new ApiError(known ? 405 : 404, known ? `${req.method} is not allowed on ${path}` : `no route ${req.method} ${path}`);
  }
  if (route === 'health') return sendJson(res, 200, { status: 'ok', ...o.engine.stats() });
  if (route === 'metrics') {
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
    return void res.end(ctx.metrics.render(o.engine.stats(), memory.stats().current));
  }
  checkAuth(req, o.apiKey);
  if (route === 'models') return sendJson(res, 200, listModels(o.models));
  if (route === 'embeddings') return sendJson(res, 200, embeddingResponse(embeddingParams(await readJsonBody(req, o.maxBodyBytes), o.models)));
  const params = completionParams(await readJsonBody(req, o.maxBodyBytes), route, o.models);
  // the client going away (a closed socket before the response ended) stops its generation
  const gone = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) gone.abort();
  });
  await runCompletion(params, res, gone.signal, ctx);
}

function fail(res: ServerResponse, e: unknown): number {
  const err = e instanceof ApiError ? e : new ApiError(500, `internal error: ${(e as Error).message}`);
  if (!(e instanceof ApiError)) process.stderr.write(`kestrel serve: ${(e as Error).stack ?? String(e)}\n`);
  if (res.headersSent) {
    // mid-stream: say what happened as one more event, then end the stream
    if (!res.writableEnded) res.end(`data: ${JSON.stringify(err.body())}\n\n`);
    return err.status;
  }
  // a body left unread (too large) is not drained: the connection closes after the reply
  const headers: Record<string, string> = err.status === 429 ? { 'retry-after': String(RETRY_AFTER_SECONDS) } : {};
  if (!res.req.complete) headers.connection = 'close';
  sendError(res, err, headers);
  return err.status;
}

/** An http.Server with the API's routes (not yet listening). */
export function createApiServer(o: ServeOptions): { server: Server; metrics: ServerMetrics } {
  const metrics = new ServerMetrics();
  const ctx: CompletionContext = { engine: o.engine, metrics };
  const server = createServer((req, res) => {
    const key = `${req.method} ${(req.url ?? '/').split('?')[0]}`;
    const label = ROUTES[key] ?? STUDIO_ROUTES[key as keyof typeof STUDIO_ROUTES] ?? 'other'; // bounded label values
    handle(req, res, o, ctx).then(() => metrics.countRequest(label, res.statusCode), (e: unknown) => metrics.countRequest(label, fail(res, e)));
  });
  return { server, metrics };
}

/** Listens and resolves with the URL clients use (port 0 picks a free port). */
export function listen(server: Server, port: number, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const a = server.address() as AddressInfo;
      resolve(`http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`);
    });
  });
}
