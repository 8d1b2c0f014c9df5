// Training page: upload a JSONL dataset (its first rows shown as the chosen model will read them,
// trained spans marked), start a `kestrel finetune` job (LoRA / QLoRA / full with Unsloth's
// defaults), and watch it: live curves of loss and eval loss, learning rate, grad norm, tokens/s
// and peak memory by tag from its metrics.jsonl, a progress bar with ETA, its checkpoints, stop and
// resume; at the end, try it in chat, compare it with its base in the arena, merge, export GGUF.
import { useEffect, useState } from 'preact/hooks';
import type { DatasetInfo, DatasetPreview, JobInfo, JobMetrics, JobResult, MemoryByTag } from '../../../src/serve/studio_types.ts';
import { PICK_ARENA, PICK_CHAT, getJson, postJson, uploadText } from '../api.ts';
import { MetricChart } from './loss_chart.tsx';

type Point = JobMetrics['points'][number];
type Eval = JobMetrics['evals'][number];

const MEMORY_TAGS: (keyof MemoryByTag)[] = ['total', 'param', 'grad', 'optimizer', 'activation'];


const eta = (job: JobInfo, points: Point[]): string => {
  if (points.length < 2 || job.status !== 'running') return '';
  const first = points[0].step - 1;
  const perStep = (Date.now() - job.started) / Math.max(1, points.at(-1)!.step - first);
  const left = (job.maxSteps - points.at(-1)!.step) * perStep;
  return ` · ETA ${left > 60_000 ? `${Math.round(left / 60_000)} min` : `${Math.round(left / 1000)} s`}`;
};

function JobView(props: { job: JobInfo; refresh: () => Promise<void> }) {
  const [points, setPoints] = useState<Point[]>([]);
  const [evals, setEvals] = useState<Eval[]>([]);
  const [job, setJob] = useState(props.job);
  const [busy, setBusy] = useState<string | null>(null);
  const [note, setNote] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  // each run of the job's process (start, then every resume) reads its logs from the top: a
  // resume truncates them to its checkpoint's step
  useEffect(() => {
    let next = 0;
    let live = true;
    setPoints([]);
    const poll = async () => {
      const m = await getJson<JobMetrics>(`/api/studio/jobs/metrics?id=${job.id}&from=${next}`);
      if (!live) return;
      next = m.next;
      if (m.points.length) setPoints((p) => [...p, ...m.points]);
      setEvals(m.evals);
      setJob(m.job);
      if (m.job.status === 'running') setTimeout(poll, 500);
    };
    void poll();
    return () => { live = false; };
  }, [props.job.id, job.runs]);
  const act = async (what: string, path: string, body: Record<string, unknown>, then?: (r: JobResult & JobInfo) => void | Promise<void>) => {
    setBusy(what);
    setError(null);
    try {
      const r = await postJson<JobResult & JobInfo>(path, { id: job.id, ...body });
      await then?.(r);
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(null);
    }
  };
  const resume = () => act('resume', '/api/studio/jobs/resume', {}, (r) => setJob(r));
  const tryInChat = () => act('chat', '/api/studio/jobs/use', {}, async (r) => {
    sessionStorage.setItem(PICK_CHAT, JSON.stringify(r.name));
    await props.refresh();
    location.hash = '#chat';
  });
  const compare = () => act('arena', '/api/studio/jobs/use', {}, async (r) => {
    await postJson('/api/studio/models/load', { name: job.model });
    sessionStorage.setItem(PICK_ARENA, JSON.stringify([job.model, r.name]));
    await props.refresh();
    location.hash = '#arena';
  });
  const merge = () => act('merge', '/api/studio/jobs/merge', {}, async (r) => {
    setNote(`saved as the model folder '${r.folder}'`);
    await props.refresh();
  });
  const exportGguf = () => act('export', '/api/studio/jobs/export', { type: 'q8_0' }, (r) => setNote(`exported ${r.folder} into the models folder`));
  const last = points.at(-1);
  const steps = points.map((p) => p.step);
  const ended = job.status !== 'running';
  return (
    <div class="job" data-job={job.id}>
      <h3>{job.model} · {job.method} · <span class="status">{job.status}</span></h3>
      <progress max={job.maxSteps} value={last?.step ?? 0} />
      <p class="progress">step {last?.step ?? 0} / {job.maxSteps}{last ? ` · loss ${last.loss.toFixed(4)} · ${Math.round(last.tokens_per_sec)} tok/s` : ''}{eta(job, points)}</p>
      <div class="actions">
        {job.status === 'running' && <button onClick={() => postJson('/api/studio/jobs/stop', { id: job.id })}>Stop</button>}
        {(job.status === 'stopped' || job.status === 'failed') && job.checkpoints.length > 0 && <button disabled={!!busy} onClick={resume}>Resume</button>}
        {job.status === 'finished' && <>
          <button disabled={!!busy} onClick={tryInChat}>Try in chat</button>
          <button disabled={!!busy} onClick={compare}>Compare with base</button>
          <button disabled={!!busy} onClick={merge}>{job.method === 'full' ? 'Save to models' : 'Merge'}</button>
          <button disabled={!!busy} onClick={exportGguf}>Export GGUF (q8_0)</button>
        </>}
        {busy && <span class="busy">{busy}…</span>}
      </div>
      {note && <p class="note">{note}</p>}
      {(error ?? job.error) && <pre class="error">{error ?? job.error}</pre>}
      <p class="checkpoints">checkpoints: {job.checkpoints.length ? job.checkpoints.map((s) => `step ${s}`).join(', ') : 'none yet'}{ended ? '' : ' (one is saved on stop)'}</p>
      <div class="columns">
        <MetricChart label="loss" series={[
          { label: 'train loss', steps, values: points.map((p) => p.loss) },
          { label: 'eval loss', steps: evals.map((e) => e.step), values: evals.map((e) => e.eval_loss) },
        ]} />
        <MetricChart label="learning rate" series={[{ label: 'lr', steps, values: points.map((p) => p.lr) }]} />
        <MetricChart label="grad norm" series={[{ label: 'grad norm', steps, values: points.map((p) => p.grad_norm) }]} />
        <MetricChart label="tokens/s" series={[{ label: 'tokens/s', steps, values: points.map((p) => p.tokens_per_sec) }]} />
        <MetricChart label="peak memory (MiB)" series={MEMORY_TAGS.map((tag) => ({ label: tag, steps, values: points.map((p) => (p.mem_peak[tag] ?? 0) / 2 ** 20) }))} />
      </div>
    </div>
  );
}

/** The first rows as the model reads them: trained spans marked, prompt-only spans plain. */
function Preview(props: { preview: DatasetPreview }) {
  return (
    <div class="preview">
      <p>as the model reads them ({props.preview.format} format; <mark class="trained">marked</mark> text is trained on):</p>
      {props.preview.rows.map((r, i) => (
        <pre key={i} class="rendered" data-tokens={r.tokens}>{r.spans.map((s, j) => (s.trained ? <mark key={j} class="trained">{s.text}</mark> : <span key={j}>{s.text}</span>))}</pre>
      ))}
    </div>
  );
}

export function TrainingPage(props: { folders: string[]; refresh: () => Promise<void> }) {
  const [model, setModel] = useState(props.folders[0] ?? '');
  const [dataset, setDataset] = useState<DatasetInfo | null>(null);
  const [preview, setPreview] = useState<DatasetPreview | null>(null);
  const [settings, setSettings] = useState({ method: 'lora', max_steps: 60, lr: 2e-4, seq_len: 512, lora_r: 16, save_every: 0, eval_fraction: 0 });
  const [jobs, setJobs] = useState<JobInfo[]>([]);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => void getJson<{ jobs: JobInfo[] }>('/api/studio/jobs').then((r) => setJobs(r.jobs.reverse())), []);
  // the preview depends on the model's tokenizer and chat template
  useEffect(() => {
    setPreview(null);
    if (!dataset || !(model || props.folders[0])) return;
    postJson<DatasetPreview>('/api/studio/datasets/preview', { model: model || props.folders[0], dataset: dataset.id }).then(setPreview, (e: Error) => setError(e.message));
  }, [dataset?.id, model]);
  const upload = async (file: File) => {
    setError(null);
    try {
      setDataset(await uploadText<DatasetInfo>('/api/studio/datasets', await file.text()));
    } catch (e) {
      setError((e as Error).message);
    }
  };
  const start = async () => {
    setError(null);
    try {
      // 0 leaves save_every to the server's default (a checkpoint every fifth of the run)
      const { save_every, ...rest } = settings;
      const job = await postJson<JobInfo>('/api/studio/jobs', { model: model || props.folders[0], dataset: dataset?.id, ...rest, ...(save_every ? { save_every } : {}) });
      setJobs((j) => [job, ...j]);
    } catch (e) {
      setError((e as Error).message);
    }
  };
  const num = (key: 'max_steps' | 'lr' | 'seq_len' | 'lora_r' | 'save_every' | 'eval_fraction') => (
    <label>{key} <input type="number" name={key} value={settings[key]} onInput={(e) => { const v = Number((e.target as HTMLInputElement).value); setSettings((s) => ({ ...s, [key]: v })); }} /></label>
  );
  return (
    <section class="training">
      <h2>Fine-tune</h2>
      <div class="params">
        <label>model <select name="train-model" value={model} onChange={(e) => setModel((e.target as HTMLSelectElement).value)}>
          {props.folders.map((f) => <option key={f} value={f}>{f}</option>)}
        </select></label>
        <label>dataset (JSONL) <input type="file" name="dataset" accept=".jsonl,.json,application/x-ndjson" onChange={(e) => { const f = (e.target as HTMLInputElement).files?.[0]; if (f) void upload(f); }} /></label>
        <label>method <select name="method" value={settings.method} onChange={(e) => { const method = (e.target as HTMLSelectElement).value; setSettings((s) => ({ ...s, method })); }}>
          <option value="lora">LoRA</option><option value="qlora">QLoRA</option><option value="full">full</option>
        </select></label>
        {num('max_steps')}{num('lr')}{num('seq_len')}{num('lora_r')}{num('save_every')}{num('eval_fraction')}
        <button onClick={start} disabled={!dataset}>Start</button>
      </div>
      {dataset && <div class="dataset"><p>{dataset.rows} rows; the first:</p><pre>{dataset.preview.map((r) => JSON.stringify(r)).join('\n')}</pre>{preview && <Preview preview={preview} />}</div>}
      {error && <p class="error" role="alert">{error}</p>}
      {jobs.map((j) => <JobView key={j.id} job={j} refresh={props.refresh} />)}
    </section>
  );
}
