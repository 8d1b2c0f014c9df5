// OpenAI's response shapes for chat and text completions, whole and as stream chunks, including
// both endpoints' logprobs layouts (chat: content[{token, logprob, bytes, top_logprobs}];
// completions: tokens, token_logprobs, top_logprobs, text_offset).
import type { Choice, LoggedToken } from './choice.js';
import type { CompletionParams } from './request_params.js';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

type TokenText = (id: number) => string;

function chatLogprobs(entries: LoggedToken[], tokenText: TokenText): unknown {
  const item = (id: number, logprob: number) => {
    const token = tokenText(id);
    return { token, logprob, bytes: [...Buffer.from(token, 'utf8')] };
  };
  return { content: entries.map((e) => ({ ...item(e.id, e.logprob), top_logprobs: e.top.map((t) => item(t.id, t.logprob)) })) };
}

function completionLogprobs(entries: LoggedToken[], tokenText: TokenText, offset: number): unknown {
  const tokens = entries.map((e) => tokenText(e.id));
  const text_offset: number[] = [];
  for (const t of tokens) {
    text_offset.push(offset);
    offset += t.length;
  }
  return {
    tokens, text_offset,
    token_logprobs: entries.map((e) => e.logprob),
    top_logprobs: entries.map((e) => Object.fromEntries(e.top.map((t) => [tokenText(t.id), t.logprob]))),
  };
}

export class ResponseWriter {
  readonly id: string;
  readonly created = Math.floor(Date.now() / 1000);
  private readonly offsets = new Map<number, number>();

  constructor(private readonly p: CompletionParams, private readonly tokenText: TokenText) {
    this.id = `${p.endpoint === 'chat' ? 'chatcmpl' : 'cmpl'}-${crypto.randomUUID().replaceAll('-', '')}`;
  }

  private logprobs(entries: LoggedToken[], index: number): unknown {
    if (this.p.topLogprobs === null) return null;
    if (this.p.endpoint === 'chat') return chatLogprobs(entries, this.tokenText);
    const offset = this.offsets.get(index) ?? 0;
    this.offsets.set(index, offset + entries.reduce((s, e) => s + this.tokenText(e.id).length, 0));
    return completionLogprobs(entries, this.tokenText, offset);
  }

  private head(object: string): Record<string, unknown> {
    return { id: this.id, object, created: this.created, model: this.p.served.id };
  }

  /** The non-streamed response. */
  whole(choices: Choice[], usage: Usage): unknown {
    const chat = this.p.endpoint === 'chat';
    return {
      ...this.head(chat ? 'chat.completion' : 'text_completion'),
      choices: choices.map((c) => chat
        ? { index: c.index, message: { role: 'assistant', content: c.text }, logprobs: this.logprobs(c.logprobs, c.index), finish_reason: c.finishReason }
        : { index: c.index, text: c.text, logprobs: this.logprobs(c.logprobs, c.index), finish_reason: c.finishReason }),
      usage,
    };
  }

  /** One stream chunk for a choice's new text (chat: the first delta carries the role). */
  chunk(c: Choice, delta: { text: string; logprobs: LoggedToken[] }, first: boolean): unknown {
    const chat = this.p.endpoint === 'chat';
    const logprobs = this.logprobs(delta.logprobs, c.index);
    const choice = chat
      ? { index: c.index, delta: first ? { role: 'assistant', content: delta.text } : { content: delta.text }, logprobs, finish_reason: c.finishReason }
      : { index: c.index, text: delta.text, logprobs, finish_reason: c.finishReason };
    return { ...this.head(chat ? 'chat.completion.chunk' : 'text_completion'), choices: [choice] };
  }

  /** The last chunk when stream_options.include_usage: no choices, the usage. */
  usageChunk(usage: Usage): unknown {
    return { ...this.head(this.p.endpoint === 'chat' ? 'chat.completion.chunk' : 'text_completion'), choices: [], usage };
  }
}
