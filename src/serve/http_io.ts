// The plain Node http plumbing the endpoints share: a size-capped JSON body, JSON replies, and
// server-sent events (one `data: <json>` per chunk, then `data: [DONE]`, as OpenAI streams).
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ApiError, invalid } from './errors.js';

/**
 * Reads the request body, refusing one over maxBytes (with `status`: 400 for API bodies as the
 * serving issue asks, 413 for uploads) without reading the rest.
 */
export async function readBody(req: IncomingMessage, maxBytes: number, status = 400): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > maxBytes) throw new ApiError(status, `request body of ${declared} bytes exceeds the limit of ${maxBytes} bytes`, null, 'body_too_large');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new ApiError(status, `request body exceeds the limit of ${maxBytes} bytes`, null, 'body_too_large');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Reads and parses a JSON request body (400 when over maxBytes or not JSON). */
export async function readJsonBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const text = (await readBody(req, maxBytes)).toString('utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw invalid(`request body is not valid JSON: ${(e as Error).message}`);
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export function sendError(res: ServerResponse, e: ApiError, headers: Record<string, string> = {}): void {
  sendJson(res, e.status, e.body(), headers);
}

/** Server-sent events over a response: send(chunk) writes one event, done() the [DONE] marker. */
export class EventStream {
  constructor(private readonly res: ServerResponse) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.flushHeaders();
  }

  /** Writes nothing once the response ended or the client went away (its job is being stopped). */
  send(chunk: unknown): void {
    if (!this.res.writableEnded && !this.res.destroyed) this.res.write(`data: ${JSON.stringify(chunk)}\n\n`);
  }

  done(): void {
    if (!this.res.writableEnded && !this.res.destroyed) this.res.end('data: [DONE]\n\n');
  }
}
