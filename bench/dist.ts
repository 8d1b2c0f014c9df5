// Collective bandwidth of src/dist's transports side by side in one run: allReduce, reduceScatter
// and allGather of float32 buffers from 1 to 256 MB across N local rank processes, on the
// shared-memory transport (started by Kestrel's launcher) and on the MPI transport under Open
// MPI's and MPICH's mpirun (MPI's own non-blocking collectives, in the same 16 MiB pieces). Each
// result is validated before it is timed; medians, algorithm bandwidth (bytes / time) and bus
// bandwidth (nccl-tests' convention: allReduce × 2(N-1)/N, the others × (N-1)/N), next to a
// single-process copy of the same bytes into a fresh tensor (a yardstick that includes
// first-touch page faults); the ratios are MPI's time / shared memory's (> 1: shared memory faster).
// Run: npm run bench:dist -- [--ranks 2] [--sizes 1,4,16,64,256] [--runs 5] [--transports shm,openmpi,mpich]
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as k from '../src/index.js';
import { initProcessGroup } from '../src/dist/init.js';
import { type LaunchResult, launch } from '../src/dist/launch.js';
import { launchMpi } from '../src/dist/mpirun.js';
import { DEFAULT_SLOT_BYTES } from '../src/dist/shm_transport.js';
import type { ProcessGroup } from '../src/dist/process_group.js';
import { median, writeResult } from './lib/report.js';

const { values } = parseArgs({ options: {
  ranks: { type: 'string', default: '2' }, sizes: { type: 'string', default: '1,4,16,64,256' }, runs: { type: 'string', default: '5' },
  transports: { type: 'string', default: 'shm,openmpi,mpich' },
} });
const TRANSPORTS = ['shm', 'openmpi', 'mpich'] as const;
type BenchTransport = (typeof TRANSPORTS)[number];
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

/** The rows of one transport's run (rank 0 sends them on stderr). */
async function runOn(transport: BenchTransport, ranks: number): Promise<Row[]> {
  let out = '';
  const onStderr = (rank: number, line: string): void => void (line.startsWith('RESULT ') ? (out = line.slice(7)) : process.stderr.write(`[${transport} rank ${rank}] ${line}\n`));
  const job = { nproc: ranks, command: process.execPath, args: ['--import', 'tsx', fileURLToPath(import.meta.url), ...process.argv.slice(2)], env: { BENCH_DIST_RANK: '1' }, stdout: 'ignore' as const, onStderr };
  const r: LaunchResult = transport === 'shm' ? await launch(job) : await launchMpi({ ...job, implementation: transport });
  if (r.exitCode !== 0 || !out) throw new Error(`bench/dist: the ${transport} ranks failed: ${r.failure?.message ?? 'no result'}`);
  return JSON.parse(out) as Row[];
}

const fmt = (v: number, w: number, d = 2): string => v.toFixed(d).padStart(w);

async function main(): Promise<void> {
  const ranks = Number(values.ranks);
  const transports = values.transports!.split(',').map((t) => {
    if (!TRANSPORTS.includes(t as BenchTransport)) throw new Error(`--transports: '${t}' is not one of ${TRANSPORTS.join(', ')}`);
    return t as BenchTransport;
  });
  const results: Partial<Record<BenchTransport, Row[]>> = {};
  for (const t of transports) results[t] = await runOn(t, ranks);
  const base = results.shm;
  console.log(`collectives, ${ranks} ranks, float32, median of ${values.runs} (ms; bus GB/s; ratio = MPI time / shm time)`);
  console.log(`op             MB ${transports.map((t) => `${t.padStart(9)} ms  bus GB/s`).join(' ')}  copy GB/s ${transports.filter((t) => t !== 'shm' && base).map((t) => `${t}/shm`.padStart(12)).join('')}`);
  const rows = (results[transports[0]] ?? []).map((r0, i) => {
    const per = Object.fromEntries(transports.map((t) => [t, results[t]![i]]));
    const ratios = Object.fromEntries(transports.filter((t) => t !== 'shm' && base).map((t) => [`${t}_over_shm`, per[t].ms / base![i].ms]));
    console.log(`${r0.op.padEnd(13)} ${String(r0.mb).padStart(4)} ${transports.map((t) => `${fmt(per[t].ms, 12)} ${fmt(per[t].busGBs, 9)}`).join(' ')} ${fmt(r0.copyGBs, 10)} ${Object.values(ratios).map((v) => fmt(v, 12)).join('')}`);
    return { op: r0.op, mb: r0.mb, ...Object.fromEntries(transports.map((t) => [t, per[t]])), ...ratios };
  });
  const path = writeResult('dist', {
    ranks, runs: Number(values.runs), transports, loadavg: loadavg(), slotBytes: Number(process.env.KESTREL_DIST_SLOT_BYTES ?? DEFAULT_SLOT_BYTES), dtype: 'float32',
    peer: 'MPI transport (MPI_Iallreduce / MPI_Ireduce_scatter_block / MPI_Iallgather in 16 MiB pieces) under Open MPI 4.1.4 and MPICH 4.0.2 mpirun',
    ratio: 'MPI time / shared-memory time per op and size (> 1: shared memory faster)', rows,
  });
  console.log(`wrote ${path}`);
}

if (process.env.BENCH_DIST_RANK) await rankMain();
else await main();
