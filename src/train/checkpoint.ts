// Training checkpoints: a folder checkpoint-<step>/ with the model (safetensors), the optimizer
// state (safetensors), and trainer_state.json (step, data position, RNG, schedule, loss scaler).
// It is written under a temporary name and renamed, so a crash mid-write never replaces the
// last good checkpoint; keepLast prunes older ones.
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync } from 'node:fs';
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
