// `kestrel studio [--models DIR] [--data DIR] [--port 7860] [--host 127.0.0.1] [--token TOKEN]`: the Studio web
// app and its API on the serve command's HTTP server. It binds loopback by default; another
// interface needs --token, which every API request must then carry (the printed URL hands it to
// the page in its #fragment, which browsers never send to a server or a Referer).
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { ModelRegistry } from '../serve/model_registry.js';
import { createApiServer } from '../serve/server.js';
import { checkAppBuilt, defaultAppDir } from '../serve/static_files.js';
import { TrainingJobs } from '../serve/training_jobs.js';
import { numberFlag, parseFlags } from './flags.js';
import { SERVE_DEFAULTS, STUDIO_DEFAULTS } from './defaults.js';
import { ENGINE_FLAGS, engineFromFlags, isLoopback, serveUntilSignal } from './serve.js';

/** 0.0.0.0 / :: accept any Host (the token guards them); a named host allows that name. */
const allowedHosts = (host: string): Set<string> => new Set(host === '0.0.0.0' || host === '::' ? ['*'] : [host.toLowerCase()]);

export async function studioCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    models: { type: 'string' }, data: { type: 'string' }, 'max-upload-bytes': { type: 'string' }, port: { type: 'string' }, host: { type: 'string' }, token: { type: 'string' }, 'max-body-bytes': { type: 'string' }, ...ENGINE_FLAGS,
  });
  const port = numberFlag(values, 'port', { int: true, min: 0, max: 65535 }) ?? STUDIO_DEFAULTS.port;
  const maxBodyBytes = numberFlag(values, 'max-body-bytes', { int: true, min: 1 }) ?? SERVE_DEFAULTS.maxBodyBytes;
  const maxUploadBytes = numberFlag(values, 'max-upload-bytes', { int: true, min: 1 }) ?? STUDIO_DEFAULTS.maxUploadBytes;
  const host = values.host ?? STUDIO_DEFAULTS.host;
  const token = values.token ?? null;
  if (!isLoopback(host) && !token) throw new Error(`--host ${host} opens the Studio to other machines: give --token TOKEN so every request must carry it`);
  if (token !== null && token.length < 8) throw new Error(`--token must be at least 8 characters, got ${token.length}`);
  const modelsDir = resolve(values.models ?? STUDIO_DEFAULTS.models);
  if (!existsSync(modelsDir) || !statSync(modelsDir).isDirectory()) throw new Error(`--models ${modelsDir}: not a folder`);
  const appDir = defaultAppDir();
  checkAppBuilt(appDir);
  const dataDir = resolve(values.data ?? STUDIO_DEFAULTS.data);
  mkdirSync(dataDir, { recursive: true });
  const jobs = new TrainingJobs(dataDir, modelsDir);
  const models = new ModelRegistry();
  // continuous batching: the arena's models stream at once
  const engine = engineFromFlags(values, SERVE_DEFAULTS.maxQueue);
  const { server } = createApiServer({
    models, engine, apiKey: token, maxBodyBytes,
    studio: { api: { modelsDir, models, engine, maxBodyBytes, jobs, maxUploadBytes }, guard: { allowedHosts: allowedHosts(host) }, appDir },
  });
  await serveUntilSignal('kestrel studio', server, { port, host, models, onStop: () => jobs.stopAll() }, (url) => `open ${url}/${token ? `#token=${token}` : ''} (models from ${modelsDir})`);
  return 0;
}
