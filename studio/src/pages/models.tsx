// Models page: every HF folder under --models with what it is, and load / unload, as saved or
// quantized for decoding (bf16, int8, q4: served as NAME@QUANT beside the float one, so the arena
// can compare them); below, the served models that are no folder of their own.
import { useState } from 'preact/hooks';
import { type ModelListing, postJson } from '../api.ts';

export const formatBytes = (n: number): string => (n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`);

export function ModelsPage(props: { listing: ModelListing | null; refresh: () => Promise<void> }) {
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [quant, setQuant] = useState<Record<string, string>>({});
  const act = async (what: 'load' | 'unload', name: string, q = '') => {
    setBusy(name);
    setError(null);
    try {
      await postJson(`/api/studio/models/${what}`, { name, ...(q ? { quant: q } : {}) });
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
                {' '}<select name={`quant-${m.name}`} value={quant[m.name] ?? 'int8'} onChange={(e) => setQuant({ ...quant, [m.name]: (e.target as HTMLSelectElement).value })}>
                  {['bf16', 'int8', 'q4'].map((q) => <option key={q} value={q}>{q}</option>)}
                </select>
                <button disabled={busy !== null} onClick={() => act('load', m.name, quant[m.name] ?? 'int8')}>Quantize</button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {(props.listing?.derived.length ?? 0) > 0 && <>
        <h3>Also served</h3>
        <table class="derived">
          <thead><tr><th>name</th><th>from</th><th>memory</th><th></th></tr></thead>
          <tbody>
            {props.listing!.derived.map((d) => (
              <tr key={d.name} data-model={d.name}>
                <td>{d.name}</td><td>{d.base}</td><td>{d.memoryBytes !== null ? formatBytes(d.memoryBytes) : ''}</td>
                <td><button disabled={busy !== null} onClick={() => act('unload', d.name)}>{busy === d.name ? '…' : 'Unload'}</button></td>
              </tr>
            ))}
          </tbody>
        </table>
      </>}
    </section>
  );
}
