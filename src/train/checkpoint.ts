// Training checkpoints: a folder checkpoint-<step>/ with the model (safetensors), the optimizer
// state (safetensors), and trainer_state.json (step, data position, RNG, schedule, loss scaler).
// It is written under a temporary name and renamed, so a crash mid-write never replaces the
// last good checkpoint; keepLast prunes older ones. The next start removes the temporaries a
// killed save left behind, and a resume cuts the step logs back to the checkpoint.
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readJson, writeJsonAtomic } from '../io/hf_folder.js';
import { SafetensorsFile, saveSafetensors } from '../io/safetensors.js';
import type { Tensor } from '../tensor/tensor.js';

export interface TrainerState {
  step: number;
  epoch: number;
  /** micro-batches of the current epoch already consumed */
  epochStep: number;
  rng: { seed: number; counter: number };
  lossScaler: { scale: number; iter: number; lastOverflowIter: number; curHysteresis: number } | null;
  optimizerStep: number;
}

const NAME = /^checkpoint-(\d+)$/;

export function saveCheckpoint(outputDir: string, files: { model: Record<string, Tensor>; optimizer: Record<string, Tensor>; state: TrainerState }, keepLast = 0): string {
  mkdirSync(outputDir, { recursive: true });
  const final = join(outputDir, `checkpoint-${files.state.step}`);
  const tmp = `${final}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  saveSafetensors(join(tmp, 'model.safetensors'), files.model, { format: 'pt' });
  saveSafetensors(join(tmp, 'optimizer.safetensors'), files.optimizer);
  writeJsonAtomic(join(tmp, 'trainer_state.json'), files.state);
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  if (keepLast > 0) for (const old of listCheckpoints(outputDir).slice(0, -keepLast)) rmSync(old.path, { recursive: true, force: true });
  return final;
}

export function listCheckpoints(outputDir: string): { step: number; path: string }[] {
  if (!existsSync(outputDir)) return [];
  return readdirSync(outputDir)
    .map((n) => ({ m: NAME.exec(n), n }))
    .filter((x) => x.m)
    .map((x) => ({ step: Number(x.m![1]), path: join(outputDir, x.n) }))
    .sort((a, b) => a.step - b.step);
}

export function loadCheckpoint(dir: string): { model: SafetensorsFile; optimizer: SafetensorsFile; state: TrainerState } {
  for (const f of ['model.safetensors', 'optimizer.safetensors', 'trainer_state.json'])
    if (!existsSync(join(dir, f))) throw new Error(`${dir}: not a checkpoint (no ${f})`);
  return {
    model: new SafetensorsFile(join(dir, 'model.safetensors')),
    optimizer: new SafetensorsFile(join(dir, 'optimizer.safetensors')),
    state: parseState(readJson(join(dir, 'trainer_state.json')), join(dir, 'trainer_state.json')),
  };
}

/** A sharded (ZeRO) checkpoint's model and trainer state; its optimizer shards are read by sharded_checkpoint.ts. */
export function loadShardedCheckpoint(dir: string): { model: SafetensorsFile; optimizer: null; state: TrainerState } {
  for (const f of ['model.safetensors', 'trainer_state.json'])
    if (!existsSync(join(dir, f))) throw new Error(`${dir}: not a checkpoint (no ${f})`);
  return { model: new SafetensorsFile(join(dir, 'model.safetensors')), optimizer: null, state: parseState(readJson(join(dir, 'trainer_state.json')), join(dir, 'trainer_state.json')) };
}

function parseState(j: Record<string, unknown>, file: string): TrainerState {
  const int = (k: string): number => {
    const v = j[k];
    if (!Number.isInteger(v) || (v as number) < 0) throw new Error(`${file}: field '${k}' must be a non-negative integer`);
    return v as number;
  };
  const rng = j.rng as { seed?: unknown; counter?: unknown } | undefined;
  if (!rng || !Number.isSafeInteger(rng.seed) || !Number.isSafeInteger(rng.counter)) throw new Error(`${file}: field 'rng' must be { seed, counter }`);
  const ls = j.lossScaler as TrainerState['lossScaler'];
  return {
    step: int('step'), epoch: int('epoch'), epochStep: int('epochStep'), optimizerStep: int('optimizerStep'),
    rng: { seed: rng.seed as number, counter: rng.counter as number },
    lossScaler: ls && typeof ls.scale === 'number' ? ls : null,
  };
}

/** `name.tmp-<pid>` or `name.tmp-<pid>-<suffix>`: how every atomic write in Kestrel names its temporary. */
const TEMP = /\.tmp-(\d+)(-[a-z0-9]+)?$/;

function alive(pid: number): boolean {
  if (pid === process.pid) return false; // ours from a previous life of this pid, or leftover: nothing of ours is mid-write at start
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temporaries (`checkpoint-N.tmp-PID/`, `model.safetensors.tmp-PID`, ...) that a save
 * killed mid-write left in dir; they can be as large as a checkpoint. A live process's are kept.
 */
export function removeStaleTemps(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const removed: string[] = [];
  for (const name of readdirSync(dir)) {
    const m = TEMP.exec(name);
    if (!m || alive(Number(m[1]))) continue;
    rmSync(join(dir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

/**
 * Keeps the lines of a JSONL step log (metrics.jsonl, eval.jsonl) up to `step`: after a resume
 * the steps past the checkpoint are run again, and must not appear twice. A torn last line (a
 * kill mid-append) is dropped too.
 */
export function truncateLog(path: string, step: number): void {
  if (!existsSync(path)) return;
  const lines = readFileSync(path, 'utf8').split('\n');
  const kept = lines.filter((line) => {
    try {
      const s = (JSON.parse(line) as { step?: unknown }).step;
      return typeof s === 'number' && s <= step;
    } catch {
      return false;
    }
  });
  if (kept.length === lines.filter(Boolean).length) return;
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, kept.map((l) => l + '\n').join(''));
  renameSync(tmp, path);
}
