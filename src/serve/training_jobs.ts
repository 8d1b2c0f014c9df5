// The Studio's fine-tuning jobs: datasets uploaded into the Studio's own data folder under
// generated names (no client path ever reaches the disk), each job a `kestrel finetune` child
// process writing <data>/jobs/<id>/metrics.jsonl, which the page reads for its live curves.
// Stop sends SIGINT (the trainer finishes the step, saves a checkpoint and exits); resume starts the
// same command again with --resume latest, in the same folder; the server stops every job on exit.
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BodyFields } from './body_fields.js';
import { ApiError, invalid } from './errors.js';
import { spawnKestrel, stderrTail } from './kestrel_child.js';
import { modelFolderPath } from './model_folders.js';
import type { DatasetInfo, JobInfo, JobMetrics } from './studio_types.js';

const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface Job {
  info: JobInfo;
  child: ChildProcess;
  /** the end of its current process's stderr */
  stderr: () => string;
  /** the `kestrel finetune` arguments it was started with (resume adds --resume latest) */
  args: string[];
}

const CHECKPOINT = /^checkpoint-(\d+)$/;

/** The steps of the complete checkpoints in a job's folder (a save in progress is a .tmp folder). */
function checkpointSteps(output: string): number[] {
  if (!existsSync(output)) return [];
  return readdirSync(output).flatMap((f) => {
    const m = CHECKPOINT.exec(f);
    return m ? [Number(m[1])] : [];
  }).sort((a, b) => a - b);
}

/** Whole JSON lines of a log that may be being appended to (the last line can be incomplete). */
function jsonLines<T>(file: string, from = 0): T[] {
  const lines = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
  const rows: T[] = [];
  for (const line of lines.slice(from)) {
    try {
      rows.push(JSON.parse(line) as T);
    } catch {
      break;
    }
  }
  return rows;
}

/** JSONL rows, or a 400 naming the first bad line (upload:LINE). */
function jsonlRows(text: string): unknown[] {
  const rows: unknown[] = [];
  text.split('\n').forEach((line, i) => {
    if (!line.trim()) return;
    try {
      rows.push(JSON.parse(line));
    } catch (e) {
      throw invalid(`upload:${i + 1}: not a JSON line: ${(e as Error).message}`, 'body');
    }
  });
  if (!rows.length) throw invalid('the upload holds no JSON lines', 'body');
  return rows;
}

export class TrainingJobs {
  private readonly jobs = new Map<string, Job>();

  constructor(private readonly dataDir: string, private readonly modelsDir: string) {}

  /** Stores an uploaded JSONL dataset under a generated name; returns its id, row count and first rows. */
  saveDataset(body: Buffer): DatasetInfo {
    const rows = jsonlRows(body.toString('utf8'));
    const id = randomUUID();
    mkdirSync(join(this.dataDir, 'uploads'), { recursive: true });
    writeFileSync(join(this.dataDir, 'uploads', `${id}.jsonl`), body);
    return { id, rows: rows.length, preview: rows.slice(0, 3) };
  }

  /** The stored upload `id` names, or 400/404. */
  datasetPath(id: unknown): string {
    if (typeof id !== 'string' || !ID.test(id)) throw invalid(`'dataset' must be the id an upload returned, got ${JSON.stringify(id)}`, 'dataset');
    const file = join(this.dataDir, 'uploads', `${id}.jsonl`);
    if (!existsSync(file)) throw new ApiError(404, `no uploaded dataset '${id}'`, 'dataset', 'dataset_not_found');
    return file;
  }

  /** Starts `kestrel finetune` from a validated body. */
  start(body: unknown): JobInfo {
    const f = new BodyFields(body);
    const dir = modelFolderPath(this.modelsDir, f.body.model);
    const data = this.datasetPath(f.body.dataset);
    const method = f.string('method') ?? 'lora';
    if (!['lora', 'qlora', 'full'].includes(method)) throw invalid(`'method' must be lora, qlora or full, got '${method}'`, 'method');
    const maxSteps = f.number('max_steps', { int: true, min: 1, max: 100_000 }, 60);
    const lr = f.number('lr', { above: 0, max: 1 }, 2e-4);
    const seqLen = f.number('seq_len', { int: true, min: 8, max: 32_768 }, 512);
    const loraR = f.number('lora_r', { int: true, min: 1, max: 1024 }, 16);
    // a checkpoint five times a run by default: something to resume from and to list
    const saveEvery = f.number('save_every', { int: true, min: 0, max: 100_000 }, Math.max(1, Math.ceil(maxSteps / 5)));
    const evalFraction = f.number('eval_fraction', { min: 0, max: 0.5 }, 0);
    const evalEvery = f.number('eval_every', { int: true, min: 0, max: 100_000 }, evalFraction > 0 ? Math.max(1, Math.ceil(maxSteps / 10)) : 0);
    const id = randomUUID();
    const output = this.outputOf(id);
    mkdirSync(output, { recursive: true });
    const args = ['finetune', '--model', dir, '--data', data, '--output', output, '--max-steps', String(maxSteps), '--lr', String(lr),
      '--seq-len', String(seqLen), '--save-every', String(saveEvery), '--quiet',
      ...(evalFraction > 0 ? ['--eval-fraction', String(evalFraction), '--eval-every', String(evalEvery)] : []),
      ...(method === 'full' ? ['--full'] : ['--lora-r', String(loraR), ...(method === 'qlora' ? ['--qlora'] : [])])];
    const info: JobInfo = {
      id, model: f.body.model as string, method, maxSteps, status: 'running', exitCode: null, error: null, started: Date.now(), runs: 0, checkpoints: [],
    };
    const job: Job = { info, child: undefined as unknown as ChildProcess, stderr: () => '', args };
    this.jobs.set(id, job);
    this.run(job, args);
    return info;
  }

  /** Starts (or restarts) the job's process and follows it to its end. */
  private run(job: Job, args: string[]): void {
    const { info } = job;
    Object.assign(info, { status: 'running', exitCode: null, error: null, started: Date.now(), runs: info.runs + 1 });
    job.child = spawnKestrel(args);
    job.stderr = stderrTail(job.child);
    job.child.on('close', (code, signal) => {
      info.exitCode = code;
      // the trainer exits 130 / 143 after a SIGINT / SIGTERM stop
      info.status = code === 0 ? 'finished' : code === 130 || code === 143 || signal ? 'stopped' : 'failed';
      if (info.status === 'failed') info.error = job.stderr().trim().split('\n').slice(-5).join('\n');
    });
  }

  /** The job's folder: metrics.jsonl, eval.jsonl, checkpoint-N/ and, at the end, the adapter or model. */
  outputOf(id: string): string {
    return join(this.dataDir, 'jobs', id);
  }

  private described(job: Job): JobInfo {
    job.info.checkpoints = checkpointSteps(this.outputOf(job.info.id));
    return job.info;
  }

  list(): JobInfo[] {
    return [...this.jobs.values()].map((j) => this.described(j));
  }

  /** A job that is not running, or 409. */
  ended(id: unknown): JobInfo {
    const job = this.job(id);
    if (job.info.status === 'running') throw new ApiError(409, `job ${job.info.id} is still running; stop it or wait for its end`, 'id', 'job_running');
    return this.described(job);
  }

  /** Continues a stopped or failed job from its latest checkpoint, in the same folder. */
  resume(id: unknown): JobInfo {
    const job = this.job(id);
    const info = this.ended(id);
    if (info.status === 'finished') throw new ApiError(409, `job ${info.id} has finished all ${info.maxSteps} steps; there is nothing to resume`, 'id', 'job_finished');
    if (!info.checkpoints.length) throw new ApiError(409, `job ${info.id} saved no checkpoint before it ended; start it again instead`, 'id', 'no_checkpoint');
    this.run(job, [...job.args, '--resume', 'latest']);
    return this.described(job);
  }

  /** The job `id`, or 404. */
  private job(id: unknown): Job {
    const job = typeof id === 'string' ? this.jobs.get(id) : undefined;
    if (!job) throw new ApiError(404, `no training job ${JSON.stringify(id)}`, 'id', 'job_not_found');
    return job;
  }

  /** metrics.jsonl lines from line `from` on (the page asks for what it has not seen). */
  metrics(id: unknown, from: number): JobMetrics {
    const job = this.job(id);
    const output = this.outputOf(job.info.id);
    const points = jsonLines<JobMetrics['points'][number]>(join(output, 'metrics.jsonl'), from);
    // eval lines are few (one per --eval-every steps): sent whole each time
    const evals = jsonLines<JobMetrics['evals'][number]>(join(output, 'eval.jsonl'));
    return { job: this.described(job), points, evals, next: from + points.length };
  }

  /** SIGINT: the trainer stops after the current step (a second stop kills it). */
  stop(id: unknown): JobInfo {
    const job = this.job(id);
    if (job.info.status === 'running') job.child.kill('SIGINT');
    return job.info;
  }

  /** Ends every running job (the server is shutting down). */
  stopAll(): void {
    for (const j of this.jobs.values()) if (j.info.status === 'running') j.child.kill('SIGTERM');
  }
}
