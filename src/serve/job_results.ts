// What a finished fine-tuning job gives the rest of the Studio: its model served for chat and the
// arena (a LoRA job's adapter loaded into its base, a full job's folder loaded whole), merged into
// a new folder under --models (`kestrel merge`; a full job's model is copied), or exported as a
// GGUF file there (`kestrel export`). Names are generated from the base and the job id: the
// client never names a path.
import { cpSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ApiError, invalid } from './errors.js';
import { spawnKestrel, stderrTail } from './kestrel_child.js';
import { modelFolderPath } from './model_folders.js';
import type { ModelRegistry } from './model_registry.js';
import type { JobInfo, JobResult } from './studio_types.js';
import type { TrainingJobs } from './training_jobs.js';

const GGUF_TYPES = ['f32', 'f16', 'q8_0', 'q4_0', 'q4_k_m'] as const;

/** `kestrel <args>` to its end; rejects with the end of its stderr. */
function runKestrel(args: string[]): Promise<void> {
  const child = spawnKestrel(args);
  const stderr = stderrTail(child);
  return new Promise((resolve, reject) => child.on('close', (code) => (code === 0 ? resolve() : reject(
    new ApiError(500, `kestrel ${args[0]} failed (exit ${code}): ${stderr().trim().split('\n').slice(-3).join(' / ')}`, null, 'job_result_failed')))));
}

export class JobResults {
  constructor(private readonly jobs: TrainingJobs, private readonly models: ModelRegistry, private readonly modelsDir: string) {}

  /** The ended job and what its folder holds at the end: a LoRA adapter or a whole model. */
  private final(id: unknown): { info: JobInfo; output: string; adapter: boolean } {
    const info = this.jobs.ended(id);
    const output = this.jobs.outputOf(info.id);
    const adapter = existsSync(join(output, 'adapter_config.json'));
    if (!adapter && !existsSync(join(output, 'config.json')))
      throw new ApiError(409, `job ${info.id} ended ${info.status} before saving its ${info.method === 'full' ? 'model' : 'adapter'}; resume it to the end first`, 'id', 'no_result');
    return { info, output, adapter };
  }

  private name(info: JobInfo): string {
    return `${info.model}-ft-${info.id.slice(0, 8)}`;
  }

  /** Serves the job's model (loading its base first for an adapter) under a generated name. */
  async use(id: unknown): Promise<JobResult> {
    const { info, output, adapter } = this.final(id);
    const name = this.name(info);
    if (this.models.get(name)) return { name, folder: null };
    try {
      if (!adapter) await this.models.loadFolder(name, output);
      else {
        if (!this.models.get(info.model)) await this.models.loadFolder(info.model, modelFolderPath(this.modelsDir, info.model));
        this.models.loadAdapter(name, output, info.model);
      }
    } catch (e) {
      throw new ApiError(400, `cannot load job ${info.id}'s result: ${(e as Error).message}`, 'id', 'load_failed');
    }
    return { name, folder: null };
  }

  /** A whole-model folder under --models: the adapter merged into its base, or the full job's model copied. */
  async merge(id: unknown): Promise<JobResult> {
    const { info, output, adapter } = this.final(id);
    const folder = this.name(info);
    const dest = join(this.modelsDir, folder);
    if (existsSync(dest)) throw new ApiError(409, `'${folder}' already exists under --models`, 'id', 'exists');
    // written beside its final name and renamed: a half-written folder is never listed as a model
    const tmp = join(this.modelsDir, `.${folder}.tmp-${process.pid}`);
    rmSync(tmp, { recursive: true, force: true });
    try {
      if (adapter) await runKestrel(['merge', '--model', modelFolderPath(this.modelsDir, info.model), '--adapter', output, '--out', tmp]);
      else {
        mkdirSync(tmp);
        for (const f of readdirSync(output)) if (!/^checkpoint-|\.jsonl$/.test(f)) cpSync(join(output, f), join(tmp, f), { recursive: true });
      }
      renameSync(tmp, dest);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
    return { name: folder, folder };
  }

  /** FOLDER.gguf under --models: `kestrel export` of the base with the job's adapter (or its whole model). */
  async export(id: unknown, type: unknown): Promise<JobResult> {
    const t = type ?? 'q8_0';
    if (typeof t !== 'string' || !(GGUF_TYPES as readonly string[]).includes(t)) throw invalid(`'type' must be one of ${GGUF_TYPES.join(', ')}, got ${JSON.stringify(type)}`, 'type');
    const { info, output, adapter } = this.final(id);
    const file = `${this.name(info)}-${t}.gguf`;
    const model = adapter ? ['--model', modelFolderPath(this.modelsDir, info.model), '--adapter', output] : ['--model', output];
    await runKestrel(['export', ...model, '--format', 'gguf', '--type', t, '--out', join(this.modelsDir, file)]);
    return { name: file, folder: file };
  }
}
