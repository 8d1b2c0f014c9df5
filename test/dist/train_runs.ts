// Runs `kestrel train` on the tiny model for the data-parallel tests and reads back what it wrote:
// losses, gradient norms and memory peaks from metrics.jsonl (rank 0's), and the final weights.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { runCli } from '../helpers.js';

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

export type Peak = { param: number; grad: number; optimizer: number };

/** kestrel train (3 steps, clip 1.2) into dir/out with extra flags; what rank 0 wrote */
export function train(dir: string, out: string, extra: string[]): { losses: number[]; norms: number[]; weights: Buffer; peaks: Peak[] } {
  const args = ['train', '--model', join(dir, 'config.json'), '--data', join(dir, 'train.jsonl'), '--output', join(dir, out),
    '--max-steps', '3', '--batch-size', '2', '--seq-len', '10', '--eval-fraction', '0', '--clip', '1.2', '--quiet', ...extra];
  const r = runCli(args);
  assert.equal(r.status, 0, r.stderr);
  const lines = readFileSync(join(dir, out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { loss: number; grad_norm: number; mem_peak: Peak });
  return { losses: lines.map((l) => l.loss), norms: lines.map((l) => l.grad_norm), weights: readFileSync(join(dir, out, 'model.safetensors')), peaks: lines.map((l) => l.mem_peak) };
}

