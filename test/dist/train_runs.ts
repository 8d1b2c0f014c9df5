// Runs `kestrel train` on the tiny model for the data-parallel tests and reads back what it wrote:
// losses, gradient norms and memory peaks from metrics.jsonl (rank 0's), and the final weights.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { loadPretrained } from '../../src/models/load.js';
import { assertClose, runCli } from '../helpers.js';

process.env.KESTREL_NUM_THREADS = '1'; // the same kernels' partition on every process (runCli passes the environment on)

/** every tensor of a safetensors file as float64 arrays, by name */
export function weights(path: string): Map<string, Float64Array> {
  const f = new SafetensorsFile(path);
  try {
    return new Map(f.names.map((n) => {
      const t = f.tensor(n, { backend: 'cpu' });
      const v = Float64Array.from(t.toFloat32Array());
      t.dispose();
      return [n, v];
    }));
  } finally {
    f.close();
  }
}

/** An HF folder's parameters as k.loadPretrained sees them (a sharded model.safetensors.index.json included), as float64 arrays. */
export async function folderWeights(dir: string): Promise<Map<string, Float64Array>> {
  const { model } = await loadPretrained(dir);
  const out = new Map(model.namedParameters().map(([n, p]) => [n, Float64Array.from(p.toFloat32Array())]));
  model.dispose();
  return out;
}

/** The final weights of a run (an HF folder) equal a 1-rank run's model.safetensors within float32 reduction-order tolerance. */
export async function sameWeights(folder: string, oneFile: string): Promise<void> {
  const [a, b] = [await folderWeights(folder), weights(oneFile)];
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  for (const [name, v] of a) assertClose(v, b.get(name)!, { atol: 1e-6, rtol: 1e-5, what: name });
}

export type Peak = { param: number; grad: number; optimizer: number };

/**
 * A tiny llama of `layers` layers in dir/config.json (more layers than tinyTrainDir's one: buckets
 * to bound); a larger vocab makes the embeddings a large share of the parameters, as in real models.
 */
export function deeperModel(dir: string, layers: number, o: { vocab?: number; tied?: boolean } = {}): void {
  writeFileSync(join(dir, 'config.json'), JSON.stringify({
    model_type: 'llama', vocab_size: o.vocab ?? 32, hidden_size: 16, intermediate_size: 32, num_hidden_layers: layers,
    num_attention_heads: 2, num_key_value_heads: 1, max_position_embeddings: 64, tie_word_embeddings: o.tied ?? false,
  }));
}

/**
 * kestrel train (3 steps, clip 1.2) into dir/out with extra flags; what rank 0 wrote. With a
 * launcher, `kestrel <launcher...> train ...` (e.g. `launch --hostfile F --`).
 */
export function train(dir: string, out: string, extra: string[], launcher: string[] = []): { losses: number[]; norms: number[]; scales: (number | null)[]; weights: Buffer; peaks: Peak[]; stderr: string } {
  const args = [...launcher, 'train', '--model', join(dir, 'config.json'), '--data', join(dir, 'train.jsonl'), '--output', join(dir, out),
    '--max-steps', '3', '--batch-size', '2', '--seq-len', '10', '--eval-fraction', '0', '--clip', '1.2', '--quiet', ...extra];
  const r = runCli(args);
  assert.equal(r.status, 0, r.stderr);
  const lines = readFileSync(join(dir, out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { loss: number; grad_norm: number; loss_scale: number | null; mem_peak: Peak });
  return {
    losses: lines.map((l) => l.loss), norms: lines.map((l) => l.grad_norm), scales: lines.map((l) => l.loss_scale),
    // a ZeRO-3 run writes a sharded folder (model.safetensors.index.json) instead: no single file
    weights: existsSync(join(dir, out, 'model.safetensors')) ? readFileSync(join(dir, out, 'model.safetensors')) : Buffer.alloc(0), peaks: lines.map((l) => l.mem_peak), stderr: r.stderr,
  };
}


/** Two runs' losses, norms, loss scales and final weights agree within float32 reduction-order tolerance. */
export function sameRun(dir: string, one: ReturnType<typeof train>, many: ReturnType<typeof train>, oneOut: string, manyOut: string): void {
  assert.equal(many.losses.length, one.losses.length, 'steps logged');
  assertClose(many.losses, one.losses, { atol: 0, rtol: 1e-6, what: 'losses' });
  assertClose(many.norms, one.norms, { atol: 1e-7, rtol: 1e-5, what: 'gradient norms' });
  assert.deepEqual(many.scales, one.scales, 'loss-scale sequence');
  const [a, b] = [weights(join(dir, manyOut, 'model.safetensors')), weights(join(dir, oneOut, 'model.safetensors'))];
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  for (const [name, v] of a) assertClose(v, b.get(name)!, { atol: 1e-6, rtol: 1e-5, what: name });
}
