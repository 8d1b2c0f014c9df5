// Kestrel Studio: the app shell (one page at a time, chosen by the #hash) over the model listing
// that every page reads. All data comes from the `kestrel studio` server over HTTP.
import 'highlight.js/styles/github.css';
import './style.css';
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { type ModelListing, getJson } from './api.ts';
import { ArenaPage } from './pages/arena.tsx';
import { ChatPage } from './pages/chat.tsx';
import { ModelsPage } from './pages/models.tsx';
import { TemplatePage } from './pages/template.tsx';
import { TrainingPage } from './pages/training.tsx';

const PAGES = ['models', 'chat', 'template', 'arena', 'training'] as const;
type Page = (typeof PAGES)[number];

const pageOf = (hash: string): Page => (PAGES as readonly string[]).includes(hash.slice(1)) ? (hash.slice(1) as Page) : 'models';

function App() {
  const [page, setPage] = useState<Page>(pageOf(location.hash));
  const [listing, setListing] = useState<ModelListing | null>(null);
  const [error, setError] = useState<string | null>(null);
  const refresh = async () => {
    try {
      setListing(await getJson<ModelListing>('/api/studio/models'));
      setError(null);
    } catch (e) {
      setError((e as Error).message);
    }
  };
  useEffect(() => {
    void refresh();
    const onHash = () => setPage(pageOf(location.hash));
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);
  const folders = (listing?.models ?? []).filter((m) => !('error' in m));
  const loaded = folders.flatMap((m) => (m.loaded && !('error' in m) ? [{ name: m.name, contextLength: m.contextLength, suggested: m.suggested }] : []));
  // adapters and quantized copies: their base folder's context and suggestions
  for (const d of listing?.derived ?? []) {
    const base = folders.find((m) => m.name === d.base);
    if (base && !('error' in base)) loaded.push({ name: d.name, contextLength: base.contextLength, suggested: base.suggested });
  }
  return (
    <>
      <nav>
        <b>Kestrel Studio</b>
        {PAGES.map((p) => <a key={p} href={`#${p}`} class={p === page ? 'current' : ''}>{p}</a>)}
      </nav>
      {error && <p class="error" role="alert">{error}</p>}
      <main>
        {page === 'models' && <ModelsPage listing={listing} refresh={refresh} />}
        {page === 'chat' && <ChatPage models={loaded} />}
        {page === 'template' && <TemplatePage folders={folders.map((m) => m.name)} />}
        {page === 'arena' && <ArenaPage models={loaded.map((m) => m.name)} />}
        {page === 'training' && <TrainingPage folders={folders.map((m) => m.name)} refresh={refresh} />}
      </main>
    </>
  );
}

render(<App />, document.getElementById('app')!);
