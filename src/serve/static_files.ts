// The Studio's built web app (dist/studio, written by `vite build` at npm ci time) served as
// files: a request path maps to a file inside that folder only, anything else gets index.html
// (the app routes itself), and hashed assets are cached for good.
import { existsSync, readFileSync, statSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon', '.json': 'application/json', '.woff2': 'font/woff2',
};

/** dist/studio beside this package's sources (src/serve or dist/serve both sit one level below the root). */
export function defaultAppDir(): string {
  return fileURLToPath(new URL('../../dist/studio', import.meta.url));
}

/** Throws when the app was not built, saying how to build it. */
export function checkAppBuilt(appDir: string): void {
  if (!existsSync(join(appDir, 'index.html'))) throw new Error(`${appDir}/index.html not found: build the Studio with \`npm run build:studio\` (npm ci builds it)`);
}

/** Sends the file a GET path names (index.html for the app's own routes). */
export function sendAppFile(res: ServerResponse, appDir: string, urlPath: string): void {
  let rel: string;
  try {
    rel = normalize(decodeURIComponent(urlPath)).replace(/^([/\\])+/, '');
  } catch {
    rel = '';
  }
  let file = join(appDir, rel);
  const inside = file.startsWith(appDir + sep);
  if (!inside || !existsSync(file) || !statSync(file).isFile()) file = join(appDir, 'index.html');
  const body = readFileSync(file);
  const immutable = file.includes(`${sep}assets${sep}`);
  res.writeHead(200, {
    'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'content-length': body.length,
    'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache', 'x-content-type-options': 'nosniff',
  });
  res.end(body);
}
