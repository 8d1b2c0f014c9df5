// Collective bandwidth of src/dist's transports side by side in one run: allReduce, reduceScatter
// and allGather of float32 buffers from 1 to 256 MB across N local rank processes, on the
// shared-memory transport (started by Kestrel's launcher) and on the MPI transport under Open
// MPI's and MPICH's mpirun (MPI's own non-blocking collectives, in the same 16 MiB pieces). Each
// result is validated before it is timed; medians, algorithm bandwidth (bytes / time) and bus
// bandwidth (nccl-tests' convention: allReduce × 2(N-1)/N, the others × (N-1)/N), next to a
// single-process copy of the same bytes into a fresh tensor (a yardstick that includes
// first-touch page faults); the ratios are MPI's time / shared memory's (> 1: shared memory faster).
// Shared memory is timed on ordinary tensors (each rank reads its peers' private buffers with
// cross-memory attach, one copy, as Open MPI's shared-memory transport does; checked to have run so
// by ProcessGroup.crossMemoryCalls) and, as ZeRO's buckets and shards are, on tensors from
// group.shared() (read in place; checked by ProcessGroup.inPlaceCalls); the results of both by the
// collective tests. The `slots` transport is shared memory with cross-memory attach off
// (KESTREL_DIST_CMA=0, as where a seccomp profile denies it): ordinary tensors copied in and out
// through the segment's slots.
// A noisy machine moves a small call's time by half from minute to minute: --repeats R runs the
// transports R times in turn and reports each time and ratio as the median over the rounds (each
// round's ratio from the transports run minutes apart at most).
// Run: npm run bench:dist -- [--ranks 2] [--sizes 1,4,16,64,256] [--runs 5] [--repeats 1] [--transports shm,slots,openmpi,mpich]
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
  transports: { type: 'string', default: 'shm,slots,openmpi,mpich' }, repeats: { type: 'string', default: '1' },
} });
const TRANSPORTS = ['shm', 'slots', 'openmpi', 'mpich'] as const;
type BenchTransport = (typeof TRANSPORTS)[number];
const MB = 1 << 20;

interface Row { op: string; mb: number; ms: number; algGBs: number; busGBs: number; copyGBs: number; inPlaceMs?: number }

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
  // calls timed per cell: --runs at 16 MB and up, more below (16 / MB times as many): a 1 MB call's
  // time moves by half between neighbours on a busy VM, and 176 of them cost less than 11 at 16 MB
  const runsAt = (mb: number): number => Number(values.runs) * Math.max(1, Math.round(16 / mb));
  const rows: Row[] = [];
  const sizes = values.sizes!.split(',').map(Number);
  // where the transport shares memory: shared() buffers of the largest size, viewed at each size
  // (a region stays mapped until the group closes, so one set serves every size)
  const most = (Math.max(...sizes) * MB) / 4;
  // the slots run times ordinary tensors alone (the in-place path is the shm run's)
  const slots = process.env.KESTREL_DIST_CMA === '0';
  const regions = pg.sharesMemory && !slots ? { x: pg.shared(most), shard: pg.shared(most / N), full: pg.shared(most), mine: pg.shared(most / N) } : null;
  // ordinary tensors: on shared memory every timed call must read the peers' buffers with cross-memory attach, or with it off none
  const timePrivate = async (op: string, mb: number, fn: () => PromiseLike<void>): Promise<number> => {
    const runs = runsAt(mb);
    const calls = pg.crossMemoryCalls;
    const ms = await time(pg, runs, fn);
    const took = pg.crossMemoryCalls - calls;
    if (pg.sharesMemory && (slots ? took !== 0 : took < runs)) throw new Error(`${op} ${mb} MB on ordinary tensors: ${took} of ${runs} calls read the peers with cross-memory attach${slots ? ' with KESTREL_DIST_CMA=0' : ''}`);
    return ms;
  };
  for (const mb of sizes) {
    const runs = runsAt(mb);
    const n = (mb * MB) / 4;
    const bytes = mb * MB;
    const x = k.full([n], r + 1, { backend: 'cpu' });
    const copyMs = await time(pg, runs, async () => k.clone(x).dispose());
    const row = (op: string, ms: number, busFactor: number): Row =>
      ({ op, mb, ms, algGBs: bytes / ms / 1e6, busGBs: (bytes / ms / 1e6) * busFactor, copyGBs: bytes / copyMs / 1e6 });
    // the same calls on shared() buffers (each read in place)
    const shared = regions && { x: k.narrow(regions.x, 0, 0, n), shard: k.narrow(regions.shard, 0, 0, n / N), full: k.narrow(regions.full, 0, 0, n), mine: k.narrow(regions.mine, 0, 0, n / N) };
    const inPlace = async (op: string, fn: (t: NonNullable<typeof shared>) => PromiseLike<void>): Promise<Partial<Row>> => {
      if (!shared) return {};
      const calls = pg.inPlaceCalls;
      const ms = await time(pg, runs, () => fn(shared));
      if (pg.inPlaceCalls - calls < runs + 1) throw new Error(`${op} ${mb} MB on shared() buffers did not run in place`);
      return { inPlaceMs: ms };
    };
    // allReduce sum of (r + 1): N(N+1)/2 everywhere after one call; later calls keep growing, so check the first
    const check = k.full([n], r + 1, { backend: 'cpu' });
    await pg.allReduce(check, 'sum');
    expectAll(check, () => (N * (N + 1)) / 2, `allReduce ${mb} MB`);
    check.dispose();
    rows.push({ ...row('allReduce', await timePrivate('allReduce', mb, () => pg.allReduce(x, 'max')), (2 * (N - 1)) / N), ...(await inPlace('allReduce', (t) => pg.allReduce(t.x, 'max'))) });
    const shard = k.zeros([n / N], { backend: 'cpu' });
    const full = k.full([n], r + 1, { backend: 'cpu' });
    await pg.reduceScatter(shard, full, 'sum');
    expectAll(shard, () => (N * (N + 1)) / 2, `reduceScatter ${mb} MB`);
    rows.push({ ...row('reduceScatter', await timePrivate('reduceScatter', mb, () => pg.reduceScatter(shard, full, 'sum')), (N - 1) / N), ...(await inPlace('reduceScatter', (t) => pg.reduceScatter(t.shard, t.full, 'sum'))) });
    const mine = k.full([n / N], r + 1, { backend: 'cpu' });
    await pg.allGather(full, mine);
    expectAll(full, (i) => Math.floor(i / (n / N)) + 1, `allGather ${mb} MB`);
    rows.push({ ...row('allGather', await timePrivate('allGather', mb, () => pg.allGather(full, mine)), (N - 1) / N), ...(await inPlace('allGather', (t) => pg.allGather(t.full, t.mine))) });
    for (const t of [x, shard, full, mine, ...Object.values(shared ?? {})]) t.dispose();
  }
  for (const t of Object.values(regions ?? {})) t.dispose();
  pg.destroy();
  // on stderr: the launcher hands each stderr line to main's handler
  if (r === 0) process.stderr.write(`RESULT ${JSON.stringify(rows)}\n`);
}

/** The rows of one transport's run (rank 0 sends them on stderr). */
async function runOn(transport: BenchTransport, ranks: number): Promise<Row[]> {
  let out = '';
  const onStderr = (rank: number, line: string): void => void (line.startsWith('RESULT ') ? (out = line.slice(7)) : process.stderr.write(`[${transport} rank ${rank}] ${line}\n`));
  const env: Record<string, string> = transport === 'slots' ? { BENCH_DIST_RANK: '1', KESTREL_DIST_CMA: '0' } : { BENCH_DIST_RANK: '1' };
  const job = { nproc: ranks, command: process.execPath, args: ['--import', 'tsx', fileURLToPath(import.meta.url), ...process.argv.slice(2)], env, stdout: 'ignore' as const, onStderr };
  const r: LaunchResult = transport === 'shm' || transport === 'slots' ? await launch(job) : await launchMpi({ ...job, implementation: transport });
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
  const rounds: Partial<Record<BenchTransport, Row[]>>[] = [];
  const repeats = Number(values.repeats);
  if (!(Number.isInteger(repeats) && repeats >= 1)) throw new Error(`--repeats ${values.repeats}: an integer >= 1`);
  for (let i = 0; i < repeats; i++) {
    const round: Partial<Record<BenchTransport, Row[]>> = {};
    for (const t of transports) round[t] = await runOn(t, ranks);
    rounds.push(round);
  }
  const hasShm = transports.includes('shm');
  const mpis = transports.filter((t) => (t === 'openmpi' || t === 'mpich') && hasShm);
  const slotRatios = transports.includes('slots') ? transports.filter((t) => t === 'openmpi' || t === 'mpich') : [];
  const med = (f: (round: Partial<Record<BenchTransport, Row[]>>) => number): number => median(rounds.map(f));
  console.log(`collectives, ${ranks} ranks, float32, median of ${values.runs} calls (16 / MB times as many below 16 MB)${rounds.length > 1 ? `, then of ${rounds.length} rounds` : ''} (ms; bus GB/s; ratio = MPI time / shm time)`);
  console.log(`op             MB ${transports.map((t) => `${t.padStart(9)} ms  bus GB/s`).join(' ')}${hasShm ? '  in place ms' : ''}  copy GB/s ${mpis.map((t) => `${t}/shm`.padStart(12)).join('')}${mpis.map((t) => `${t}/in place`.padStart(18)).join('')}${slotRatios.map((t) => `${t}/slots`.padStart(15)).join('')}`);
  const rows = (rounds[0][transports[0]] ?? []).map((r0, i) => {
    const per = Object.fromEntries(transports.map((t) => {
      const ms = med((r) => r[t]![i].ms);
      return [t, { ...r0, ms, algGBs: (r0.algGBs * r0.ms) / ms, busGBs: (r0.busGBs * r0.ms) / ms, copyGBs: med((r) => r[t]![i].copyGBs), inPlaceMs: t === 'shm' && rounds[0].shm![i].inPlaceMs !== undefined ? med((r) => r.shm![i].inPlaceMs!) : undefined }];
    })) as Record<BenchTransport, Row>;
    const inPlaceMs = hasShm ? per.shm.inPlaceMs : undefined;
    const ratios = Object.fromEntries(mpis.map((t) => [`${t}_over_shm`, med((r) => r[t]![i].ms / r.shm![i].ms)]));
    const inPlaceRatios = Object.fromEntries(mpis.flatMap((t) => (inPlaceMs ? [[`${t}_over_shm_in_place`, med((r) => r[t]![i].ms / r.shm![i].inPlaceMs!)]] : [])));
    const overSlots = Object.fromEntries(slotRatios.map((t) => [`${t}_over_slots`, med((r) => r[t]![i].ms / r.slots![i].ms)]));
    const byRound = Object.fromEntries(mpis.flatMap((t) => [[`${t}_over_shm_by_round`, rounds.map((r) => r[t]![i].ms / r.shm![i].ms)], ...(inPlaceMs ? [[`${t}_over_shm_in_place_by_round`, rounds.map((r) => r[t]![i].ms / r.shm![i].inPlaceMs!)]] : [])]));
    console.log(`${r0.op.padEnd(13)} ${String(r0.mb).padStart(4)} ${transports.map((t) => `${fmt(per[t].ms, 12)} ${fmt(per[t].busGBs, 9)}`).join(' ')}${hasShm ? fmt(inPlaceMs ?? NaN, 13) : ''} ${fmt(per[transports[0]].copyGBs, 10)} ${Object.values(ratios).map((v) => fmt(v, 12)).join('')}${Object.values(inPlaceRatios).map((v) => fmt(v, 18)).join('')}${Object.values(overSlots).map((v) => fmt(v, 15)).join('')}`);
    return { op: r0.op, mb: r0.mb, ...per, ...ratios, ...inPlaceRatios, ...overSlots, ...(rounds.length > 1 ? byRound : {}) };
  });
  const path = writeResult('dist', {
    ranks, runs: Number(values.runs), runsBelow16MB: '16 / MB times --runs', repeats: rounds.length, transports, loadavg: loadavg(), slotBytes: Number(process.env.KESTREL_DIST_SLOT_BYTES ?? DEFAULT_SLOT_BYTES), dtype: 'float32',
    peer: 'MPI transport (MPI_Iallreduce / MPI_Ireduce_scatter_block / MPI_Iallgather in 16 MiB pieces) under Open MPI 4.1.4 and MPICH 4.0.2 mpirun',
    ratio: 'MPI time / shared-memory time per op and size (> 1: shared memory faster), on ordinary tensors (read with cross-memory attach); _in_place: against shared memory on shared() buffers (read in place, as ZeRO\'s are); _over_slots: against shared memory with cross-memory attach off (KESTREL_DIST_CMA=0: ordinary tensors copied through the slots)', spinUs: Number(process.env.KESTREL_DIST_SPIN_US ?? 50), rows,
  });
  console.log(`wrote ${path}`);
}

if (process.env.BENCH_DIST_RANK) await rankMain();
else await main();
