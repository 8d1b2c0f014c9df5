// The final model of a ZeRO-3 run as a Hugging Face sharded folder (model.safetensors.index.json
// and model-0000i-of-0000n.safetensors), written without gathering the model on one rank: rank 0
// writes what every rank holds whole (parameters below the persistence threshold, buffers), if
// anything, as the first shard, then every rank gathers one unit (embeddings, a layer, the norm,
// the head) at a time and rank 0 writes it as the next shard before the unit is released. transformers and loadPretrained read the index.
import { join } from 'node:path';
import { mkdirSync, rmSync } from 'node:fs';
import { type Json, writeJsonAtomic } from '../io/hf_folder.js';
import { saveSafetensors } from '../io/safetensors.js';
import type { Module } from '../nn/module.js';
import { dtypeBytes } from '../tensor/dtype.js';
import { isMeta } from '../tensor/meta.js';
import type { Tensor } from '../tensor/tensor.js';
import type { ZeroStage3 } from './zero3.js';

const shardName = (i: number, n: number): string => `model-${String(i).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;

/**
 * Every rank calls it together after training; rank 0 writes config.json and the shards into dir.
 * @example await saveZero3Pretrained(zero3, 'out', model, hfConfig) // out/model.safetensors.index.json
 */
export async function saveZero3Pretrained(dp: ZeroStage3, dir: string, model: Module, hfConfig: Json): Promise<void> {
  const main = dp.rank === 0;
  const whole = main ? Object.entries(model.stateDict()).filter(([, t]) => !isMeta(t)) : [];
  // every rank holds whole only what is below the persistence threshold (and buffers): often nothing
  const first = whole.length ? 1 : 0;
  const n = dp.unitCount + first;
  const weightMap: Record<string, string> = {};
  let bytes = 0;
  const write = (i: number, tensors: Record<string, Tensor>): void => {
    if (!main) return;
    const file = shardName(i, n);
    saveSafetensors(join(dir, file), tensors, { format: 'pt' });
    for (const [name, t] of Object.entries(tensors)) (weightMap[name] = file, (bytes += t.numel * dtypeBytes(t.dtype)));
  };
  if (main) {
    mkdirSync(dir, { recursive: true });
    rmSync(join(dir, 'model.safetensors'), { force: true }); // a single-file model of an earlier run would shadow the index
    if (first) write(1, Object.fromEntries(whole));
  }
  let i = first + 1;
  dp.eachUnit((named) => write(i++, Object.fromEntries(named)));
  if (main) {
    writeJsonAtomic(join(dir, 'model.safetensors.index.json'), { metadata: { total_size: bytes }, weight_map: weightMap });
    writeJsonAtomic(join(dir, 'config.json'), hfConfig);
  }
  await dp.sum([0]); // no rank exits before rank 0 has written the folder
}
