// Collective bandwidth of the shared-memory transport (src/dist): allReduce, reduceScatter and
// allGather of float32 buffers from 1 to 256 MB across N local rank processes, each result
// validated before it is timed; medians, algorithm bandwidth (bytes / time) and bus bandwidth
// (nccl-tests' convention: allReduce × 2(N-1)/N, the others × (N-1)/N), next to a single-process
// copy of the same bytes into a fresh tensor (a yardstick that includes first-touch page faults). No MPI peer yet (the MPI
// transport is not built): the ratio against MPI's collectives comes with it.
// Run: node --import tsx bench/dist.ts [--ranks 2] [--sizes 1,4,16,64,256] [--runs 5]
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as k from '../src/index.js';
import { initProcessGroup } from '../src/dist/init.js';
import { launch } from '../src/dist/launch.js';
import { DEFAULT_SLOT_BYTES } from '../src/dist/shm_transport.js';
import type { ProcessGroup } from '../src/dist/process_group.js';
import { median, writeResult } from './lib/report.js';

const { values } = parseArgs({ options: { ranks: { type: 'string', default: '2' }, sizes: { type: 'string', default: '1,4,16,64,256' }, runs: { type: 'string', default: '5' } } });
const MB = 1 << 20;

interface Row { op: string; mb: number; ms: number; algGBs: number; busGBs: number; copyGBs: number }

async function time(pg: ProcessGroup, runs: number, fn: () => PromiseLike<void>): Promise<number> {
  await fn(); // warm-up: faults the buffers' pages in
  const ts: number[] = [];
  for (let i = 0; i < runs; i++) {
    await pg.barrier();
    const t0 = performance.now();
    await fn();
    ts.push(performance.now() - t0);
  }
  return median(ts);
}

function expectAll(t: k.Tensor, want: (i: number) => number, what: string): void {
  const v = t.toFloat32Array();
  for (const i of [0, 1, v.length >> 1, v.length - 1]) if (v[i] !== want(i)) throw new Error(`${what}: element ${i} is ${v[i]}, want ${want(i)}`);
}

async function rankMain(): Promise<void> {
  const pg = await initProcessGroup();
  const N = pg.size;
  const r = pg.rank;
  const runs = Number(values.runs);
  const rows: Row[] = [];
  for (const mb of values.sizes!.split(',').map(Number)) {
    const n = (mb * MB) / 4;
    const bytes = mb * MB;
    const x = k.full([n], r + 1, { backend: 'cpu' });
    const copyMs = await time(pg, runs, async () => k.clone(x).dispose());
    const row = (op: string, ms: number, busFactor: number): Row =>
      ({ op, mb, ms, algGBs: bytes / ms / 1e6, busGBs: (bytes / ms / 1e6) * busFactor, copyGBs: bytes / copyMs / 1e6 });
    // allReduce sum of (r + 1): N(N+1)/2 everywhere after one call; later calls keep growing, so check the first
    const check = k.full([n], r + 1, { backend: 'cpu' });
    await pg.allReduce(check, 'sum');
    expectAll(check, () => (N * (N + 1)) / 2, `allReduce ${mb} MB`);
    check.dispose();
    rows.push(row('allReduce', await time(pg, runs, () => pg.allReduce(x, 'max')), (2 * (N - 1)) / N));
    const shard = k.zeros([n / N], { backend: 'cpu' });
    const full = k.full([n], r + 1, { backend: 'cpu' });
    await pg.reduceScatter(shard, full, 'sum');
    expectAll(shard, () => (N * (N + 1)) / 2, `reduceScatter ${mb} MB`);
    rows.push(row('reduceScatter', await time(pg, runs, () => pg.reduceScatter(shard, full, 'sum')), (N - 1) / N));
    const mine = k.full([n / N], r + 1, { backend: 'cpu' });
    await pg.allGather(full, mine);
    expectAll(full, (i) => Math.floor(i / (n / N)) + 1, `allGather ${mb} MB`);
    rows.push(row('allGather', await time(pg, runs, () => pg.allGather(full, mine)), (N - 1) / N));
    for (const t of [x, shard, full, mine]) t.dispose();
  }
  pg.destroy();
  // on stderr: the launcher hands each stderr line to main's handler
  if (r === 0) process.stderr.write(`RESULT ${JSON.stringify(rows)}\n`);
}

async function main(): Promise<void> {
  const ranks = Number(values.ranks);
  let out = '';
  const r = await launch({
    nproc: ranks, command: process.execPath, args: ['--import', 'tsx', fileURLToPath(import.meta.url), ...process.argv.slice(2)],
    env: { BENCH_DIST_RANK: '1' }, stdout: 'ignore',
    onStderr: (rank, line) => void (line.startsWith('RESULT ') ? (out = line.slice(7)) : process.stderr.write(`[rank ${rank}] ${line}\n`)),
  });
  if (r.exitCode !== 0 || !out) throw new Error(`bench/dist: the ranks failed: ${r.failure?.message ?? 'no result'}`);
  const rows = JSON.parse(out) as Row[];
  console.log(`shared-memory collectives, ${ranks} ranks, float32, median of ${values.runs}`);
  console.log('op             MB      ms   alg GB/s  bus GB/s  copy GB/s');
  for (const x of rows)
    console.log(`${x.op.padEnd(13)} ${String(x.mb).padStart(4)} ${x.ms.toFixed(2).padStart(7)} ${x.algGBs.toFixed(2).padStart(9)} ${x.busGBs.toFixed(2).padStart(9)} ${x.copyGBs.toFixed(2).padStart(10)}`);
  const path = writeResult('dist', { ranks, runs: Number(values.runs), transport: 'shm', slotBytes: Number(process.env.KESTREL_DIST_SLOT_BYTES ?? DEFAULT_SLOT_BYTES), dtype: 'float32', peer: 'none (MPI transport not built yet)', rows });
  console.log(`wrote ${path}`);
}

if (process.env.BENCH_DIST_RANK) await rankMain();
else await main();
