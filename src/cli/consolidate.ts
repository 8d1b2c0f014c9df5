// `kestrel consolidate CKPT --out DIR [--config FILE]`: a sharded (ZeRO) checkpoint as a plain HF
// folder (src/train/consolidate.ts; DeepSpeed's zero_to_fp32.py).
import { consolidate, findConfig } from '../train/consolidate.js';
import { parseFlags } from './flags.js';

const FLAGS = { out: { type: 'string' }, config: { type: 'string' } } as const;

export function consolidateCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, FLAGS, { positionals: true });
  if (positionals.length !== 1) throw new Error(`consolidate: give one checkpoint folder, e.g. kestrel consolidate out/checkpoint-100 --out out/fp32 (got ${positionals.length})`);
  const ckpt = positionals[0];
  if (!values.out) throw new Error('consolidate: --out DIR is required');
  const config = values.config ?? findConfig(ckpt);
  if (!config) throw new Error(`consolidate: no config.json in ${ckpt} or the folder above it; pass --config path/to/config.json`);
  const names = consolidate(ckpt, values.out, config);
  process.stdout.write(`consolidated ${names.length} tensors from ${ckpt} into ${values.out}\n`);
  return Promise.resolve(0);
}
