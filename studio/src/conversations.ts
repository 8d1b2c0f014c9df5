// Conversations kept in the browser's localStorage (nothing of a chat is stored on the server),
// each with its own model, system prompt and sampling parameters; exported as a JSON file.
import type { ChatMessage, SamplingParams, Usage } from './api.ts';

export interface Conversation {
  id: string;
  title: string;
  model: string;
  system: string;
  params: SamplingParams;
  messages: ChatMessage[];
  /** the last reply's token counts (prompt + completion = the context window used) */
  usage: Usage | null;
  updated: number;
}

const KEY = 'kestrel-studio-conversations';
export const DEFAULT_PARAMS: SamplingParams = { temperature: 0.7, top_p: 0.95, max_tokens: 256 };

export function loadConversations(): Conversation[] {
  try {
    const v = JSON.parse(localStorage.getItem(KEY) ?? '[]') as unknown;
    return Array.isArray(v) ? (v as Conversation[]) : [];
  } catch {
    return [];
  }
}

export function saveConversations(list: Conversation[]): void {
  localStorage.setItem(KEY, JSON.stringify(list));
}

export function newConversation(model: string): Conversation {
  return { id: crypto.randomUUID(), title: 'New chat', model, system: '', params: { ...DEFAULT_PARAMS }, messages: [], usage: null, updated: Date.now() };
}

/** Downloads a value as a .json file. */
export function downloadJson(name: string, value: unknown): void {
  const url = URL.createObjectURL(new Blob([JSON.stringify(value, null, 2)], { type: 'application/json' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  URL.revokeObjectURL(url);
}
