// Training page: upload a JSONL dataset (preview of its first rows), start a `kestrel finetune` job
// (LoRA / QLoRA / full with Unsloth's defaults), and watch it: live curves of loss, learning rate,
// grad norm, tokens/s and peak memory from its metrics.jsonl, a progress bar with ETA, and stop.
import { useEffect, useState } from 'preact/hooks';
import type { DatasetInfo, JobInfo, JobMetrics } from '../../../src/serve/studio_types.ts';
import { getJson, postJson, uploadText } from '../api.ts';
import { MetricChart } from './loss_chart.tsx';

type Point = JobMetrics['points'][number];

const eta = (job: JobInfo, points: Point[]): string => {
  if (points.length < 2 || job.status !== 'running') return '';
  const perStep = (Date.now() - job.started) / points.at(-1)!.step;
  const left = (job.maxSteps - points.at(-1)!.step) * perStep;
  return ` · ETA ${left > 60_000 ? `${Math.round(left / 60_000)} min` : `${Math.round(left / 1000)} s`}`;
};

function JobView(props: { job: JobInfo }) {
  const [points, setPoints] = useState<Point[]>([]);
  const [job, setJob] = useState(props.job);
  useEffect(() => {
    let next = 0;
    let live = true;
    const poll = async () => {
      const m = await getJson<JobMetrics>(`/api/studio/jobs/metrics?id=${job.id}&from=${next}`);
      next = m.next;
      if (m.points.length) setPoints((p) => [...p, ...m.points]);
      setJob(m.job);
      if (live && m.job.status === 'running') setTimeout(poll, 500);
    };
    void poll();
    return () => { live = false; };
  }, [props.job.id]);
  const last = points.at(-1);
  const steps = points.map((p) => p.step);
  return (
    <div class="job" data-job={job.id}>
      <h3>{job.model} · {job.method} · <span class="status">{job.status}</span></h3>
      <progress max={job.maxSteps} value={last?.step ?? 0} />
      <p class="progress">step {last?.step ?? 0} / {job.maxSteps}{last ? ` · loss ${last.loss.toFixed(4)} · ${Math.round(last.tokens_per_sec)} tok/s` : ''}{eta(job, points)}</p>
      {job.status === 'running' && <button onClick={() => postJson('/api/studio/jobs/stop', { id: job.id })}>Stop</button>}
      {job.error && <pre class="error">{job.error}</pre>}
      <div class="columns">
        <MetricChart label="loss" steps={steps} values={points.map((p) => p.loss)} />
        <MetricChart label="learning rate" steps={steps} values={points.map((p) => p.lr)} />
        <MetricChart label="grad norm" steps={steps} values={points.map((p) => p.grad_norm)} />
        <MetricChart label="tokens/s" steps={steps} values={points.map((p) => p.tokens_per_sec)} />
        <MetricChart label="peak memory (MiB)" steps={steps} values={points.map((p) => p.mem_peak.total / 2 ** 20)} />
      </div>
    </div>
  );
}

export function TrainingPage(props: { folders: string[] }) {
  const [model, setModel] = useState(props.folders[0] ?? '');
  const [dataset, setDataset] = useState<DatasetInfo | null>(null);
  const [settings, setSettings] = useState({ method: 'lora', max_steps: 60, lr: 2e-4, seq_len: 512, lora_r: 16 });
  const [jobs, setJobs] = useState<JobInfo[]>([]);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => void getJson<{ jobs: JobInfo[] }>('/api/studio/jobs').then((r) => setJobs(r.jobs.reverse())), []);
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
      const job = await postJson<JobInfo>('/api/studio/jobs', { model: model || props.folders[0], dataset: dataset?.id, ...settings });
      setJobs((j) => [job, ...j]);
    } catch (e) {
      setError((e as Error).message);
    }
  };
  const num = (key: 'max_steps' | 'lr' | 'seq_len' | 'lora_r') => (
    <label>{key} <input type="number" name={key} value={settings[key]} onChange={(e) => setSettings({ ...settings, [key]: Number((e.target as HTMLInputElement).value) })} /></label>
  );
  return (
    <section class="training">
      <h2>Fine-tune</h2>
      <div class="params">
        <label>model <select name="train-model" value={model} onChange={(e) => setModel((e.target as HTMLSelectElement).value)}>
          {props.folders.map((f) => <option key={f} value={f}>{f}</option>)}
        </select></label>
        <label>dataset (JSONL) <input type="file" name="dataset" accept=".jsonl,.json,application/x-ndjson" onChange={(e) => { const f = (e.target as HTMLInputElement).files?.[0]; if (f) void upload(f); }} /></label>
        <label>method <select name="method" value={settings.method} onChange={(e) => setSettings({ ...settings, method: (e.target as HTMLSelectElement).value })}>
          <option value="lora">LoRA</option><option value="qlora">QLoRA</option><option value="full">full</option>
        </select></label>
        {num('max_steps')}{num('lr')}{num('seq_len')}{num('lora_r')}
        <button onClick={start} disabled={!dataset}>Start</button>
      </div>
      {dataset && <div class="dataset"><p>{dataset.rows} rows; the first:</p><pre>{dataset.preview.map((r) => JSON.stringify(r)).join('\n')}</pre></div>}
      {error && <p class="error" role="alert">{error}</p>}
      {jobs.map((j) => <JobView key={j.id} job={j} />)}
    </section>
  );
}
