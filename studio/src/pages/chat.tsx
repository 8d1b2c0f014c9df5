// Chat page: conversations (kept in localStorage) with a model, a system prompt and sampling
// parameters each; replies stream in as markdown with highlighted code; stop, regenerate, export.
import { useEffect, useRef, useState } from 'preact/hooks';
import { type ChatMessage, type SuggestedParam, PICK_CHAT, postJson, streamChat, takePick } from '../api.ts';
import { type Attachment, readAttachment, withAttachments } from '../attachments.ts';
import { type Conversation, downloadJson, loadConversations, newConversation, saveConversations } from '../conversations.ts';
import { renderMarkdown } from '../markdown.ts';

interface LoadedModel {
  name: string;
  contextLength: number | null;
  suggested: SuggestedParam[];
}

/** The model's suggested settings with their reasons, applied to the conversation with one click. */
function Suggested(props: { list: SuggestedParam[]; apply: () => void }) {
  if (!props.list.length) return null;
  return (
    <details class="suggested">
      <summary>Suggested settings <button onClick={(e) => { e.preventDefault(); props.apply(); }}>Apply</button></summary>
      <ul>{props.list.map((p) => <li key={p.name}><b>{p.name} = {p.value}</b>: {p.reason}</li>)}</ul>
    </details>
  );
}

/** A chat's title: its first message without the attached files' blocks. */
const titleOf = (content: string): string => content.replace(/<file name="[^"]*">\n[\s\S]*?\n<\/file>\n/g, '').slice(0, 40) || 'files';

function Message(props: { m: ChatMessage; onEdit: (() => void) | null }) {
  if (props.m.role !== 'assistant') {
    return <div class={`msg ${props.m.role}`}><pre>{props.m.content}</pre>{props.onEdit && <button class="edit" onClick={props.onEdit}>Edit</button>}</div>;
  }
  return <div class="msg assistant" dangerouslySetInnerHTML={{ __html: renderMarkdown(props.m.content) }} />;
}

function ParamInputs(props: { c: Conversation; update: (c: Partial<Conversation>) => void }) {
  const p = props.c.params;
  const field = (key: keyof typeof p, step: number, min: number, max: number) => (
    <label>{key} <input type="number" name={key} step={step} min={min} max={max} value={p[key]}
      onChange={(e) => props.update({ params: { ...p, [key]: Number((e.target as HTMLInputElement).value) } })} /></label>
  );
  return <div class="params">{field('temperature', 0.05, 0, 2)}{field('top_p', 0.05, 0, 1)}{field('max_tokens', 1, 1, 4096)}</div>;
}

export function ChatPage(props: { models: LoadedModel[] }) {
  const [list, setList] = useState<Conversation[]>(loadConversations);
  const [currentId, setCurrentId] = useState<string | null>(list[0]?.id ?? null);
  const [input, setInput] = useState('');
  const [error, setError] = useState<string | null>(null);
  const stopper = useRef<AbortController | null>(null);
  const [streaming, setStreaming] = useState(false);
  const [files, setFiles] = useState<Attachment[]>([]);
  const [refused, setRefused] = useState<string[]>([]);
  useEffect(() => saveConversations(list), [list]);
  const current = list.find((c) => c.id === currentId) ?? null;
  const update = (id: string, patch: Partial<Conversation> | ((c: Conversation) => Partial<Conversation>)) =>
    setList((l) => l.map((c) => (c.id === id ? { ...c, ...(typeof patch === 'function' ? patch(c) : patch), updated: Date.now() } : c)));

  const start = (model = props.models[0]?.name ?? '') => {
    const c = newConversation(model);
    setList((l) => [c, ...l]);
    setCurrentId(c.id);
  };
  // the training page's "Try in chat" opens a conversation with the fine-tune
  useEffect(() => {
    const picked = takePick<string>(PICK_CHAT);
    if (picked) start(picked);
  }, []);

  /** Streams a reply to `history` into the conversation. */
  const reply = async (c: Conversation, history: ChatMessage[]) => {
    const model = c.model || props.models[0]?.name;
    if (!model) return setError('Load a model on the Models page first.');
    setError(null);
    const messages: ChatMessage[] = c.system ? [{ role: 'system', content: c.system }, ...history] : history;
    update(c.id, { model, messages: [...history, { role: 'assistant', content: '' }], title: c.messages.length ? c.title : titleOf(history[0].content) });
    stopper.current = new AbortController();
    setStreaming(true);
    let text = '';
    try {
      await streamChat(model, messages, c.params, {
        onText: (t) => {
          text += t;
          update(c.id, { messages: [...history, { role: 'assistant', content: text }] });
        },
        onUsage: (usage) => update(c.id, { usage }),
      }, stopper.current.signal);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setStreaming(false);
    }
  };

  /** Reads the chosen files into chips, each with its token count from the model's tokenizer. */
  const attach = async (list: FileList) => {
    const model = current?.model || props.models[0]?.name;
    const read = await Promise.all([...list].map(readAttachment));
    setRefused(read.flatMap((r) => ('error' in r ? [`${r.name}: ${r.error}`] : [])));
    const ok = read.filter((r): r is Attachment => !('error' in r));
    const counted = await Promise.all(ok.map(async (a) => ({ ...a, tokens: model ? (await postJson<{ tokens: number }>('/api/studio/tokens', { model, text: a.block })).tokens : null })));
    setFiles((f) => [...f, ...counted]);
  };
  const send = () => {
    if (!current || (!input.trim() && !files.length) || streaming || overflow) return;
    const history: ChatMessage[] = [...current.messages, { role: 'user', content: withAttachments(input, files) }];
    setInput('');
    setFiles([]);
    void reply(current, history);
  };
  const regenerate = () => {
    if (!current || streaming) return;
    const history = current.messages.at(-1)?.role === 'assistant' ? current.messages.slice(0, -1) : current.messages;
    if (history.length) void reply(current, history);
  };
  /** Puts a user message back into the composer and drops it and everything after it. */
  const edit = (i: number) => {
    if (!current || streaming) return;
    setInput(current.messages[i].content);
    update(current.id, { messages: current.messages.slice(0, i), usage: null });
  };
  const ctx = props.models.find((m) => m.name === current?.model)?.contextLength;
  const suggested = props.models.find((m) => m.name === current?.model)?.suggested ?? [];
  // what the next request needs: the conversation so far, the files, and room for the reply
  const fileTokens = files.reduce((s, f) => s + (f.tokens ?? 0), 0);
  const needed = (current?.usage?.total_tokens ?? 0) + fileTokens + (current?.params.max_tokens ?? 0);
  const overflow = ctx != null && files.length > 0 && needed > ctx;

  return (
    <section class="chat">
      <aside>
        <button onClick={() => start()}>New chat</button>
        <button onClick={() => downloadJson('kestrel-conversations.json', list)} disabled={!list.length}>Export JSON</button>
        <ul>{list.map((c) => <li key={c.id} class={c.id === currentId ? 'current' : ''} onClick={() => setCurrentId(c.id)}>{c.title}</li>)}</ul>
      </aside>
      {current ? (
        <div class="conversation">
          <div class="settings">
            <label>model <select name="model" value={current.model} onChange={(e) => update(current.id, { model: (e.target as HTMLSelectElement).value })}>
              {props.models.map((m) => <option key={m.name} value={m.name}>{m.name}</option>)}
            </select></label>
            <ParamInputs c={current} update={(p) => update(current.id, p)} />
            <Suggested list={suggested} apply={() => update(current.id, { params: { ...current.params, ...Object.fromEntries(suggested.map((p) => [p.name, p.value])) } })} />
            <textarea name="system" placeholder="System prompt" value={current.system} onInput={(e) => update(current.id, { system: (e.target as HTMLTextAreaElement).value })} />
          </div>
          <div class="messages">{current.messages.map((m, i) => <Message key={i} m={m} onEdit={m.role === 'user' && !streaming ? () => edit(i) : null} />)}</div>
          {current.usage && (
            <p class="usage">prompt {current.usage.prompt_tokens} + reply {current.usage.completion_tokens} = {current.usage.total_tokens} tokens{ctx ? ` of ${ctx} (${Math.round((100 * current.usage.total_tokens) / ctx)}% of the context)` : ''}</p>
          )}
          {error && <p class="error" role="alert">{error}</p>}
          <div class="files">
            <label class="attach">Attach files <input type="file" name="files" multiple onChange={(e) => { const l = (e.target as HTMLInputElement).files; if (l) void attach(l); (e.target as HTMLInputElement).value = ''; }} /></label>
            {files.map((f, i) => (
              <span class="chip" key={f.name + i}>{f.name} · {f.tokens ?? '?'} tokens <button aria-label={`remove ${f.name}`} onClick={() => setFiles(files.filter((_, j) => j !== i))}>×</button></span>
            ))}
          </div>
          {refused.map((r) => <p class="error" key={r}>{r}</p>)}
          {overflow && <p class="error overflow" role="alert">The files do not fit: they take {fileTokens} tokens, the conversation {current.usage?.total_tokens ?? 0} and the reply up to {current.params.max_tokens}, over the context of {ctx}. Remove files (×) or lower max_tokens.</p>}
          <div class="compose">
            <textarea name="prompt" placeholder="Message" value={input} onInput={(e) => setInput((e.target as HTMLTextAreaElement).value)}
              onKeyDown={(e) => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); send(); } }} />
            {streaming ? <button onClick={() => stopper.current?.abort()}>Stop</button> : <button onClick={send} disabled={overflow}>Send</button>}
            <button onClick={regenerate} disabled={streaming || !current.messages.length}>Regenerate</button>
          </div>
        </div>
      ) : <p>Start a chat with “New chat”.</p>}
    </section>
  );
}
