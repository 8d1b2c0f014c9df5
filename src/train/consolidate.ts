// DeepSpeed's zero_to_fp32 for Kestrel's sharded checkpoints: the float32 master weights are
// reassembled from every rank's shard (sharded_checkpoint.ts) into whole tensors; the tensors no
// shard holds (frozen ones) come from the checkpoint's model.safetensors. The result, with the
// model's config.json, is a plain HF folder that loadPretrained (or transformers) reads.
import { copyFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type Json, readJson, saveCheckpointFolder } from '../io/hf_folder.js';
import { SafetensorsFile } from '../io/safetensors.js';
import { tensor } from '../ops/creation.js';
import type { Tensor } from '../tensor/tensor.js';
import { isSharded, manifestShards, readManifest, reassemble } from './sharded_checkpoint.js';

const SIDE_FILES = ['generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json'];

/** config.json beside the checkpoint, or in the run's output folder above it. */
export function findConfig(ckpt: string): string | null {
  return [join(ckpt, 'config.json'), join(dirname(ckpt), 'config.json')].find((p) => existsSync(p)) ?? null;
}

/**
 * Writes `out` as an HF folder from a sharded checkpoint; returns the tensors' names.
 * @example consolidate('out/checkpoint-100', 'out/fp32', 'out/config.json')
 */
export function consolidate(ckpt: string, out: string, configPath: string): string[] {
  if (!isSharded(ckpt)) throw new Error(`${ckpt}: not a sharded (ZeRO) checkpoint (no zero_manifest.json); a plain checkpoint's model.safetensors is already whole`);
  const m = readManifest(ckpt);
  const names = Object.keys(m.tensors);
  const values = reassemble(manifestShards(ckpt, m), names.map((name) => {
    const numel = m.tensors[name].shape.reduce((a, b) => a * b, 1);
    return { length: numel, pieces: [{ name, start: 0, length: numel, at: 0 }] };
  }), ckpt);
  const tensors: Record<string, Tensor> = {};
  names.forEach((name, i) => (tensors[name] = tensor(values[i].master, { shape: m.tensors[name].shape, backend: 'cpu' })));
  const model = new SafetensorsFile(join(ckpt, 'model.safetensors'));
  try {
    for (const name of model.names) if (!(name in tensors)) tensors[name] = model.tensor(name, { backend: 'cpu' });
    saveCheckpointFolder(out, { config: readJson(configPath) as Json, tensors });
  } finally {
    model.close();
    for (const t of Object.values(tensors)) t.dispose();
  }
  for (const f of SIDE_FILES) if (existsSync(join(dirname(configPath), f))) copyFileSync(join(dirname(configPath), f), join(out, f));
  return Object.keys(tensors);
}
