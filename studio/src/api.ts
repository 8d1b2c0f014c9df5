// The Studio's only way to Kestrel: HTTP to the server that served it. The --token arrives once in
// the URL's #fragment (never sent to a server), is kept for the tab, and goes on every request.
import type { ModelListing, SuggestedParam, TemplateInfo, TemplatePreview } from '../../src/serve/studio_types.ts';

export type { ModelListing, SuggestedParam, TemplateInfo, TemplatePreview };

function takeToken(): string | null {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem('kestrel-token', decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem('kestrel-token');
}

const token = takeToken();

function headers(json: boolean): Record<string, string> {
  const h: Record<string, string> = json ? { 'content-type': 'application/json' } : {};
  if (token) h.authorization = `Bearer ${token}`;
  return h;
}

/** The server's error message (OpenAI's {error: {message}}) as an Error. */
async function failure(r: Response): Promise<Error> {
  const text = await r.text();
  try {
    return new Error((JSON.parse(text) as { error: { message: string } }).error.message);
  } catch {
    return new Error(`${r.status} ${r.statusText}: ${text}`);
  }
}

export async function getJson<T>(path: string): Promise<T> {
  const r = await fetch(path, { headers: headers(false) });
  if (!r.ok) throw await failure(r);
  return (await r.json()) as T;
}

export async function postJson<T>(path: string, body: unknown): Promise<T> {
  const r = await fetch(path, { method: 'POST', headers: headers(true), body: JSON.stringify(body) });
  if (!r.ok) throw await failure(r);
  return (await r.json()) as T;
}

/** POSTs a text body (an upload) and returns the JSON answer. */
export async function uploadText<T>(path: string, text: string): Promise<T> {
  const r = await fetch(path, { method: 'POST', headers: { ...headers(false), 'content-type': 'application/x-ndjson' }, body: text });
  if (!r.ok) throw await failure(r);
  return (await r.json()) as T;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface SamplingParams {
  temperature: number;
  top_p: number;
  max_tokens: number;
  top_k?: number;
  min_p?: number;
  repetition_penalty?: number;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface StreamHandlers {
  onText(text: string): void;
  onUsage?(usage: Usage): void;
}

/**
 * POST /v1/chat/completions with stream: true; calls onText per delta and onUsage at the end.
 * Resolves with the finish reason ('stop', 'length', or 'aborted' when signal fired).
 */
export async function streamChat(model: string, messages: ChatMessage[], params: SamplingParams, h: StreamHandlers, signal: AbortSignal): Promise<string> {
  const body = { model, messages, ...params, stream: true, stream_options: { include_usage: true } };
  let r: Response;
  try {
    r = await fetch('/v1/chat/completions', { method: 'POST', headers: headers(true), body: JSON.stringify(body), signal });
  } catch (e) {
    if (signal.aborted) return 'aborted';
    throw e;
  }
  if (!r.ok || !r.body) throw await failure(r);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let finish = 'stop';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      // SSE: events end with a blank line; each holds one `data: <json>` line
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const line = buffer.slice(0, end).replace(/^data: /, '');
        buffer = buffer.slice(end + 2);
        if (line === '[DONE]') return finish;
        const chunk = JSON.parse(line) as { error?: { message: string }; choices: { delta: { content?: string }; finish_reason: string | null }[]; usage?: Usage };
        if (chunk.error) throw new Error(chunk.error.message);
        const c = chunk.choices[0];
        if (c?.delta.content) h.onText(c.delta.content);
        if (c?.finish_reason) finish = c.finish_reason;
        if (chunk.usage) h.onUsage?.(chunk.usage);
      }
    }
  } catch (e) {
    if (signal.aborted) return 'aborted';
    throw e;
  }
  return finish;
}

/** What the training page leaves for the chat and arena pages: the model(s) to open them with. */
export const PICK_CHAT = 'kestrel-studio-pick-chat';
export const PICK_ARENA = 'kestrel-studio-pick-arena';

/** A value another page left in sessionStorage for this one (read once, then removed). */
export function takePick<T>(key: string): T | null {
  const v = sessionStorage.getItem(key);
  sessionStorage.removeItem(key);
  return v === null ? null : (JSON.parse(v) as T);
}
