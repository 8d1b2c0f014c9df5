// Chat-template page: the folder's template and its source, an editor whose draft is rendered for
// sample messages as you type (special tokens marked), the error with its line, and save (the
// server backs up the tokenizer_config.json it replaces).
import { useEffect, useState } from 'preact/hooks';
import { type ChatMessage, type TemplateInfo, type TemplatePreview, getJson, postJson } from '../api.ts';

const SAMPLE: ChatMessage[] = [
  { role: 'system', content: 'You are a helpful assistant.' },
  { role: 'user', content: 'What is 2 + 2?' },
  { role: 'assistant', content: '4.' },
  { role: 'user', content: 'And 3 + 3?' },
];

/** The prompt with each occurrence of a special token wrapped in <mark> (as text nodes: no HTML injection). */
function Marked(props: { text: string; special: string[] }) {
  const tokens = [...props.special].filter(Boolean).sort((a, b) => b.length - a.length);
  if (!tokens.length) return <>{props.text}</>;
  const re = new RegExp(`(${tokens.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})`);
  return <>{props.text.split(re).map((part, i) => (i % 2 ? <mark key={i}>{part}</mark> : part))}</>;
}

export function TemplatePage(props: { folders: string[] }) {
  const [name, setName] = useState(props.folders[0] ?? '');
  const [info, setInfo] = useState<TemplateInfo | null>(null);
  const [draft, setDraft] = useState('');
  const [preview, setPreview] = useState<TemplatePreview | null>(null);
  const [status, setStatus] = useState<string | null>(null);
  useEffect(() => {
    if (!name) return;
    setStatus(null);
    getJson<TemplateInfo>(`/api/studio/template?name=${encodeURIComponent(name)}`).then((i) => { setInfo(i); setDraft(i.template); }, (e: Error) => setStatus(e.message));
  }, [name]);
  useEffect(() => {
    if (!name || !info) return;
    // a short pause after typing, so a preview is not requested per keystroke
    const t = setTimeout(() => postJson<TemplatePreview>('/api/studio/template/preview', { name, template: draft, messages: SAMPLE }).then(setPreview, (e: Error) => setStatus(e.message)), 150);
    return () => clearTimeout(t);
  }, [draft, info]);
  const save = async () => {
    try {
      const r = await postJson<{ file: string; backups: string[] }>('/api/studio/template/save', { name, template: draft, messages: SAMPLE });
      setStatus(`saved to ${r.file}${r.backups.length ? ` (backup: ${r.backups.join(', ')})` : ''}`);
    } catch (e) {
      setStatus((e as Error).message);
    }
  };
  return (
    <section class="template">
      <h2>Chat template</h2>
      <label>model folder <select name="folder" value={name} onChange={(e) => setName((e.target as HTMLSelectElement).value)}>
        {props.folders.map((f) => <option key={f} value={f}>{f}</option>)}
      </select></label>
      {info && <p class="source">source: <b>{info.source}</b></p>}
      <div class="columns">
        <textarea name="template" spellcheck={false} value={draft} onInput={(e) => setDraft((e.target as HTMLTextAreaElement).value)} />
        <div class="preview">
          {preview && 'error' in preview && <p class="error" role="alert">line {preview.error.line}: {preview.error.message}</p>}
          {preview && 'prompt' in preview && <><p class="tokens">{preview.tokens} tokens</p><pre class="rendered"><Marked text={preview.prompt} special={preview.specialTokens} /></pre></>}
        </div>
      </div>
      <button onClick={save} disabled={!info || draft === info.template}>Save to tokenizer_config.json</button>
      {status && <p class="status">{status}</p>}
    </section>
  );
}
