// Models page: every HF folder under --models with what it is, and load / unload.
import { useState } from 'preact/hooks';
import { type ModelListing, postJson } from '../api.ts';

export const formatBytes = (n: number): string => (n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`);

export function ModelsPage(props: { listing: ModelListing | null; refresh: () => Promise<void> }) {
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const act = async (what: 'load' | 'unload', name: string) => {
    setBusy(name);
    setError(null);
    try {
      await postJson(`/api/studio/models/${what}`, { name });
      await props.refresh();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(null);
    }
  };
  const models = props.listing?.models ?? [];
  return (
    <section>
      <h2>Models</h2>
      {error && <p class="error" role="alert">{error}</p>}
      {!models.length && <p>No model folders (with a config.json) under --models.</p>}
      <table class="models">
        <thead><tr><th>name</th><th>family</th><th>size</th><th>dtype</th><th>context</th><th>chat template</th><th>memory</th><th></th></tr></thead>
        <tbody>
          {models.map((m) => 'error' in m ? (
            <tr key={m.name}><td>{m.name}</td><td colSpan={7} class="error">{m.error}</td></tr>
          ) : (
            <tr key={m.name} data-model={m.name}>
              <td>{m.name}</td><td>{m.family}</td><td>{formatBytes(m.sizeBytes)}</td><td>{m.dtype}</td>
              <td>{m.contextLength ?? '?'}</td><td>{m.templateSource ?? 'built-in (detected)'}</td>
              <td>{m.memoryBytes !== null ? formatBytes(m.memoryBytes) : ''}</td>
              <td>
                <button disabled={busy !== null} onClick={() => act(m.loaded ? 'unload' : 'load', m.name)}>
                  {busy === m.name ? '…' : m.loaded ? 'Unload' : 'Load'}
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
