// `npm run bench`: the tensor-engine benchmarks of issue 2, one after another (each in its own
// process, so none disturbs another): SGEMM vs OpenBLAS (numpy), fused vs composite attention,
// elementwise bandwidth vs memcpy. Collects their results into bench/results/engine.json with
// the ratios the targets name.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BENCH_DIR, writeResult } from './lib/report.js';

type Json = Record<string, unknown>;
const run = (file: string, args: string[] = []): void => {
  console.log(`\n=== ${file} ${args.join(' ')}`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(BENCH_DIR, file), ...args], { stdio: 'inherit' });
  if (r.status !== 0) throw new Error(`${file} failed with status ${r.status}`);
};
const read = (name: string): Json => JSON.parse(readFileSync(join(BENCH_DIR, 'results', `${name}.json`), 'utf8')) as Json;

// --collect only gathers the latest results of each benchmark (e.g. after running them one by one)
if (!process.argv.includes('--collect')) {
  run('sgemm.ts');
  run('attention.ts');
  run('elementwise.ts');
}

interface SgemmRow { shape: { name: string; M: number; K: number; N: number }; threads: number; kestrel: { gflops: number }; ratio?: number }
interface AttnRow { T: number; speedup: number; fused: { peakBytes: number }; composite: { peakBytes: number } }
interface EwRow { name: string; threads: number; gbps: number; ofMemcpy: number }

const sgemm = (read('sgemm').results as SgemmRow[]).filter((r) => r.threads === 2);
const square = sgemm.filter((r) => /^sq(512|1024|2048|4096)$/.test(r.shape.name));
const skinny = sgemm.filter((r) => !r.shape.name.startsWith('sq'));
const attention = read('attention').results as AttnRow[];
const ew = read('elementwise').results as EwRow[];
const minRatio = (rows: { ratio?: number }[]): number | null => {
  const rs = rows.map((r) => r.ratio).filter((x): x is number => typeof x === 'number');
  return rs.length ? Math.min(...rs) : null;
};
const summary = {
  sgemm_min_ratio_square_512_4096_2threads: minRatio(square),
  sgemm_min_ratio_llm_shapes_2threads: minRatio(skinny),
  attention_speedup_seq1024: attention.find((r) => r.T === 1024)?.speedup ?? null,
  attention_peak_ratio_seq1024: (() => {
    const r = attention.find((x) => x.T === 1024);
    return r ? r.composite.peakBytes / r.fused.peakBytes : null;
  })(),
  // elementwise ops proper (unary, binary, broadcast); reductions and the transposed copy separately
  elementwise_min_fraction_of_memcpy: Math.min(...ew.filter((r) => !/^(sum|copy)/.test(r.name)).map((r) => r.ofMemcpy)),
  reductions_min_fraction_of_memcpy: Math.min(...ew.filter((r) => r.name.startsWith('sum')).map((r) => r.ofMemcpy)),
  transposed_copy_fraction_of_memcpy: Math.min(...ew.filter((r) => r.name.startsWith('copy')).map((r) => r.ofMemcpy)),
  targets: { sgemm_square: 0.85, sgemm_llm: 0.7, attention_speedup: 3, elementwise: 0.7 },
};
console.log('\nsummary', JSON.stringify(summary, null, 2));
const path = writeResult('engine', { summary, sgemm: read('sgemm'), attention: read('attention'), elementwise: read('elementwise') });
console.log(`wrote ${path}`);
