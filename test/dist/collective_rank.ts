// One rank of the collective suite (test/dist/collectives*.test.ts launches 1-4 of these). Every
// rank builds every rank's inputs from seeds, so it computes the single-process reference itself
// (float32 accumulation in rank order, rounded once to the dtype: the order the shared-memory
// transport promises) and compares its results bit for bit. MPI reduces in an order of its own
// (COLLECTIVE_ORDER=any): there float sums and averages are checked against the exact float64
// sum within the bound of float32 summation in any order, (N-1)·2⁻²⁴·Σ|x|, plus the one rounding
// to the dtype; everything else (max, min, integers, data movement) stays bit for bit. Exits
// non-zero naming the first mismatch.
import { existsSync, readFileSync } from 'node:fs';
import * as k from '../../src/index.js';
import { backendOf } from '../../src/backend/index.js';
import { encode } from '../../src/ops/creation.js';
import { narrow } from '../../src/ops/view.js';
import { initProcessGroup } from '../../src/dist/init.js';
import type { ProcessGroup } from '../../src/dist/process_group.js';
import type { ReduceOp } from '../../src/dist/transport.js';
import { seeded } from '../helpers.js';

type Num = number;
const DTYPES: k.DType[] = ['float32', 'bfloat16', 'float16', 'float64', 'int32', 'int64', 'uint8'];
const FLOATS = new Set<k.DType>(['float32', 'bfloat16', 'float16', 'float64']);

/** rank r's n input values for one case, already representable in dtype (plain loops: every rank builds every rank's inputs, millions of values on 4 ranks) */
function values(dtype: k.DType, n: number, rank: number, caseSeed: number): number[] {
  const raw = seeded(n, 1000 * caseSeed + 17 * rank + 1, -4, 4);
  const out: number[] = []; // pushed: a preallocated Array of this size would hold its elements in a dictionary
  if (dtype === 'uint8') for (let i = 0; i < n; i++) out.push(Math.floor((raw[i] + 4) * 8));
  else if (!FLOATS.has(dtype)) for (let i = 0; i < n; i++) out.push(Math.round(raw[i] * 1000));
  else {
    const held = dtype === 'float64' ? raw : decode(dtype, encode(dtype, raw));
    for (let i = 0; i < n; i++) out.push(held[i]);
  }
  return out;
}

function decode(dtype: k.DType, a: ArrayLike<number | bigint>): Float64Array {
  const out = new Float64Array(a.length);
  const widen = dtype === 'bfloat16' ? k.bf16ToF32 : dtype === 'float16' ? k.f16ToF32 : Number;
  for (let i = 0; i < a.length; i++) out[i] = widen(a[i] as number);
  return out;
}

const make = (dtype: k.DType, v: ArrayLike<Num>): k.Tensor => k.tensor(encode(dtype, v), { dtype, backend: 'cpu' });

/** the transport's order: acc = x0; acc = acc (op) x_r for r = 1..N-1 in float32 (float64 / exact ints as stored), then avg divides */
function reduceRef(dtype: k.DType, inputs: number[][], op: ReduceOp): number[] {
  const round = dtype === 'float64' || !FLOATS.has(dtype) ? (x: number) => x : Math.fround;
  return inputs[0].map((_, i) => {
    let acc = round(inputs[0][i]);
    for (let r = 1; r < inputs.length; r++) {
      const x = inputs[r][i];
      acc = op === 'max' ? Math.max(acc, x) : op === 'min' ? Math.min(acc, x) : round(acc + x);
    }
    if (dtype === 'uint8' && op === 'sum') acc &= 255; // uint8 sums wrap
    return op === 'avg' ? round(acc / inputs.length) : acc;
  });
}

/** MPI: float sums in an unspecified order (see the top of this file) */
const ANY_ORDER = process.env.COLLECTIVE_ORDER === 'any';
/** unit roundoff of the type a sum is accumulated in, and of the dtype it is rounded to once */
const ACC_U: Partial<Record<k.DType, number>> = { float32: 2 ** -24, bfloat16: 2 ** -24, float16: 2 ** -24, float64: 2 ** -53 };
const STORE_U: Partial<Record<k.DType, number>> = { float32: 2 ** -24, bfloat16: 2 ** -8, float16: 2 ** -11, float64: 2 ** -53 };

let checks = 0;
function expectEqual(got: k.Tensor, want: number[], what: string): void {
  const g = got.toTypedArray();
  const w = encode(got.dtype, want);
  if (g.length !== w.length) throw new Error(`${what}: ${g.length} elements, want ${w.length}`);
  for (let i = 0; i < g.length; i++)
    if (g[i] !== w[i]) throw new Error(`${what}: element ${i} is ${String(g[i])}, want ${String(w[i])} (raw storage values)`);
  checks++;
}

/**
 * A reduction's result: bit for bit against the rank-order reference, or (ANY_ORDER, float sum/avg)
 * within |got − exact| ≤ (N−1)·u_acc·Σ|x| (/N for avg) + u_acc·|exact| (avg's division) + u_store·|exact|
 * + the dtype's smallest subnormal, against the exact float64 sum.
 */
function expectReduced(got: k.Tensor, inputs: number[][], op: ReduceOp, what: string): void {
  const dtype = got.dtype;
  if (!ANY_ORDER || !FLOATS.has(dtype) || op === 'max' || op === 'min') return expectEqual(got, reduceRef(dtype, inputs, op), what);
  const N = inputs.length;
  const g = decode(dtype, got.toTypedArray() as ArrayLike<number>);
  const per = op === 'avg' ? N : 1;
  for (let i = 0; i < g.length; i++) {
    let exact = 0;
    let abs = 0;
    for (const row of inputs) (exact += row[i], abs += Math.abs(row[i]));
    exact /= per;
    const tol = ((N - 1) * ACC_U[dtype]! * abs) / per + (ACC_U[dtype]! + STORE_U[dtype]!) * Math.abs(exact) + 2 ** -24;
    if (!(Math.abs(g[i] - exact) <= tol)) throw new Error(`${what}: element ${i} is ${g[i]}, the exact ${op} is ${exact} (tolerance ${tol} for any summation order)`);
  }
  checks++;
}

/**
 * COLLECTIVE_CMA=1: shared memory with cross-memory attach on, so private buffers are read directly
 * where the group's probe allowed it (required where nothing could deny it: cmaAllowed); 0: never
 * (KESTREL_DIST_CMA=0, or MPI).
 * main() sets EXPECT_CMA after the first collective, which probes.
 */
const CMA_ON = process.env.COLLECTIVE_CMA === '1';
let EXPECT_CMA = false;

/** Whether nothing here may deny process_vm_readv between sibling ranks: no seccomp filter, and Yama absent or at ptrace_scope 0-1. */
function cmaAllowed(): boolean {
  const seccomp = /^Seccomp:\s*(\d+)/m.exec(readFileSync('/proc/self/status', 'utf8'));
  const scope = existsSync('/proc/sys/kernel/yama/ptrace_scope') ? Number(readFileSync('/proc/sys/kernel/yama/ptrace_scope', 'utf8')) : 0;
  return seccomp !== null && seccomp[1] === '0' && scope <= 1;
}

/** Runs one collective on private buffers: it must read them directly where EXPECT_CMA, else take the slots (or MPI). */
async function privately(pg: ProcessGroup, what: string, run: () => PromiseLike<void>): Promise<void> {
  const before = pg.crossMemoryCalls;
  await run();
  const took = pg.crossMemoryCalls - before;
  if (took !== (EXPECT_CMA ? 1 : 0)) throw new Error(`${what}: ${took} cross-memory call(s), want ${EXPECT_CMA ? 1 : 0}`);
}

/**
 * Reductions whose blocks span several staging chunks (256 KiB of each peer's block at a time on
 * the direct path) in 1-, 2- and 8-byte dtypes: allReduce and reduceScatter sums, bit for bit.
 */
async function chunkedReductions(pg: ProcessGroup): Promise<void> {
  const N = pg.size;
  for (const [dtype, n] of [['uint8', 300_007], ['bfloat16', 140_003], ['float64', 40_009]] as const) {
    const tag = `${dtype} n=${n} N=${N} (several staging chunks)`;
    const x = Array.from({ length: N }, (_, r) => values(dtype, n, r, 700));
    const t = make(dtype, x[pg.rank]);
    await privately(pg, `allReduce ${tag}`, () => pg.allReduce(t, 'sum'));
    expectReduced(t, x, 'sum', `allReduce ${tag}`);
    const big = Array.from({ length: N }, (_, r) => values(dtype, n * N, r, 701));
    const out = make(dtype, new Array(n).fill(0));
    await privately(pg, `reduceScatter ${tag}`, () => pg.reduceScatter(out, make(dtype, big[pg.rank]), 'sum'));
    expectReduced(out, big.map((row) => row.slice(pg.rank * n, (pg.rank + 1) * n)), 'sum', `reduceScatter ${tag}`);
  }
}

async function suite(pg: ProcessGroup, dtype: k.DType, n: number, caseSeed: number): Promise<void> {
  const N = pg.size;
  const me = pg.rank;
  const tag = `${dtype} n=${n} N=${N}`;
  const ins = (s: number, len = n) => Array.from({ length: N }, (_, r) => values(dtype, len, r, caseSeed * 10 + s));
  const ops: ReduceOp[] = FLOATS.has(dtype) ? ['sum', 'avg', 'max', 'min'] : ['sum', 'max', 'min'];
  for (const [j, op] of ops.entries()) {
    const x = ins(j);
    const t = make(dtype, x[me]);
    await privately(pg, `allReduce ${op} ${tag}`, () => pg.allReduce(t, op));
    expectReduced(t, x, op, `allReduce ${op} ${tag}`);
    t.dispose();
    const big = ins(10 + j, n * N);
    const out = make(dtype, new Array(n).fill(0));
    await privately(pg, `reduceScatter ${op} ${tag}`, () => pg.reduceScatter(out, make(dtype, big[me]), op));
    expectReduced(out, big.map((row) => row.slice(me * n, (me + 1) * n)), op, `reduceScatter ${op} ${tag}`);
  }
  const b = ins(20);
  const bt = make(dtype, b[me]);
  await privately(pg, `broadcast ${tag}`, () => pg.broadcast(bt, N - 1));
  expectEqual(bt, b[N - 1], `broadcast from rank ${N - 1} ${tag}`);

  const g = ins(21);
  const gathered = make(dtype, new Array(n * N).fill(0));
  await privately(pg, `allGather ${tag}`, () => pg.allGather(gathered, make(dtype, g[me])));
  expectEqual(gathered, g.flat(), `allGather ${tag}`);

  const a = ins(22, n * N);
  const aout = make(dtype, new Array(n * N).fill(0));
  await privately(pg, `allToAll ${tag}`, () => pg.allToAll(aout, make(dtype, a[me])));
  expectEqual(aout, a.flatMap((row) => row.slice(me * n, (me + 1) * n)), `allToAll ${tag}`);

  if (N > 1) {
    // a ring: rank r sends to r+1 and receives from r-1; rank 0 sends first, the others receive first
    const p = ins(23);
    const got = make(dtype, new Array(n).fill(0));
    const sendIt = () => pg.send(make(dtype, p[me]), (me + 1) % N);
    const recvIt = () => pg.recv(got, (me + N - 1) % N);
    if (me === 0) (await sendIt(), await recvIt());
    else (await recvIt(), await sendIt());
    expectEqual(got, p[(me + N - 1) % N], `send/recv ring ${tag}`);
  }
}

/** allReduce sum and avg of n float32 (1M+3: many pieces and a ragged last one), typed arrays throughout */
async function hugeAllReduce(pg: ProcessGroup, n: number): Promise<void> {
  const inputs = Array.from({ length: pg.size }, (_, r) => Array.from(Float32Array.from(seeded(n, 5000 + r, -4, 4))));
  for (const op of ['sum', 'avg'] as const) {
    const t = k.tensor(Float32Array.from(inputs[pg.rank]), { backend: 'cpu' });
    await pg.allReduce(t, op);
    expectReduced(t, inputs, op, `allReduce ${op} float32 n=${n} N=${pg.size}`);
  }
}

/**
 * Buffers from pg.shared(), at odd offsets: where the transport shares memory (COLLECTIVE_SHARED=1)
 * each call whose members' buffers all lie in shared regions must read the peers' in place (the
 * group's inPlaceCalls grows by one); a call where some member's buffer is private reads it with
 * cross-memory attach where EXPECT_CMA (crossMemoryCalls grows by one), else copies through the
 * slots; a call whose output overlaps the input its peers read must take the slots; every result
 * bit for bit against the same reference as above.
 */
async function sharedSuite(pg: ProcessGroup): Promise<void> {
  const N = pg.size;
  const me = pg.rank;
  const expectShared = process.env.COLLECTIVE_SHARED === '1';
  const region = pg.shared(8 * 1024 * N + 64, 'float32');
  const put = (at: number, v: number[]): k.Tensor => {
    const view = narrow(region, 0, at, v.length);
    backendOf(view).kernels.copy(make('float32', v), view);
    return view;
  };
  const expectPath = async (path: 'in place' | 'private' | 'slots', what: string, run: () => Promise<void>): Promise<void> => {
    const [inPlace, cma] = [pg.inPlaceCalls, pg.crossMemoryCalls];
    await run();
    const took = { inPlace: pg.inPlaceCalls - inPlace, cma: pg.crossMemoryCalls - cma };
    const want = { inPlace: path === 'in place' && expectShared ? 1 : 0, cma: path === 'private' && EXPECT_CMA ? 1 : 0 };
    if (took.inPlace !== want.inPlace || took.cma !== want.cma)
      throw new Error(`${what}: ${took.inPlace} in-place and ${took.cma} cross-memory call(s), want ${want.inPlace} and ${want.cma}`);
  };
  // every rank's copy of the region, read in place after a barrier (MPI: none)
  const mine = values('float32', 33, me, 400);
  put(11, mine);
  await pg.barrier();
  for (let r = 0; r < N; r++) {
    const theirs = pg.peer(region, pg.ranks[r]);
    if ((theirs === null) === expectShared) throw new Error(`peer(region, ${r}): ${theirs === null ? 'null' : 'a view'} where the transport ${expectShared ? 'shares' : 'does not share'} memory`);
    if (theirs) expectEqual(narrow(theirs, 0, 11, 33), values('float32', 33, r, 400), `rank ${r}'s copy of the shared region`);
    theirs?.dispose();
  }
  await pg.barrier();
  let seed = 500;
  for (const n of [1, 7, 33, 257, 5000]) {
    const tag = `shared float32 n=${n} N=${N}`;
    for (const op of ['sum', 'avg', 'max', 'min'] as const) {
      const x = Array.from({ length: N }, (_, r) => values('float32', n, r, seed));
      const t = put(3, x[me]);
      await expectPath('in place', `allReduce ${op} ${tag}`, () => pg.allReduce(t, op).wait());
      expectReduced(t, x, op, `allReduce ${op} ${tag}`);
      // the input shared on every rank but rank 0: read with cross-memory attach (or the slots), the same bits
      const y = Array.from({ length: N }, (_, r) => values('float32', n, r, seed + 1));
      const u = me === 0 ? make('float32', y[me]) : put(5, y[me]);
      await expectPath('private', `allReduce ${op} with one private buffer ${tag}`, () => pg.allReduce(u, op).wait());
      expectReduced(u, y, op, `allReduce ${op} with one private buffer ${tag}`);
      seed += 2;
    }
    const big = Array.from({ length: N }, (_, r) => values('float32', n * N, r, seed++));
    const out = make('float32', new Array(n).fill(0));
    await expectPath('in place', `reduceScatter ${tag}`, () => pg.reduceScatter(out, put(1, big[me]), 'sum').wait());
    expectReduced(out, big.map((row) => row.slice(me * n, (me + 1) * n)), 'sum', `reduceScatter ${tag}`);
    // the output is the input's first block, which rank 0 reads from every peer: copying path
    const big2 = Array.from({ length: N }, (_, r) => values('float32', n * N, r, seed++));
    const src = put(1, big2[me]);
    await expectPath('slots', `reduceScatter into its own input ${tag}`, () => pg.reduceScatter(narrow(src, 0, 0, n), src, 'sum').wait());
    expectReduced(narrow(src, 0, 0, n), big2.map((row) => row.slice(me * n, (me + 1) * n)), 'sum', `reduceScatter into its own input ${tag}`);

    const g = Array.from({ length: N }, (_, r) => values('float32', n, r, seed++));
    const gathered = make('float32', new Array(n * N).fill(0));
    await expectPath('in place', `allGather ${tag}`, () => pg.allGather(gathered, put(7, g[me])).wait());
    expectEqual(gathered, g.flat(), `allGather ${tag}`);
    // in place: the input is this rank's block of a shared output
    const g2 = Array.from({ length: N }, (_, r) => values('float32', n, r, seed++));
    const whole = narrow(region, 0, 9, n * N);
    const mine = put(9 + me * n, g2[me]);
    await expectPath('in place', `allGather in place ${tag}`, () => pg.allGather(whole, mine).wait());
    expectEqual(whole, g2.flat(), `allGather in place ${tag}`);

    // broadcast reads the root's buffer alone, allToAll every input (its private output no peer reads)
    const b = Array.from({ length: N }, (_, r) => values('float32', n, r, seed++));
    const bt = put(13, b[me]);
    await expectPath('in place', `broadcast ${tag}`, () => pg.broadcast(bt, N - 1).wait());
    expectEqual(bt, b[N - 1], `broadcast ${tag}`);
    // a private root: read with cross-memory attach (or the slots), whatever the others' buffers
    const b2 = Array.from({ length: N }, (_, r) => values('float32', n, r, seed++));
    const bt2 = me === N - 1 ? make('float32', b2[me]) : put(13, b2[me]);
    await expectPath('private', `broadcast from a private root ${tag}`, () => pg.broadcast(bt2, N - 1).wait());
    expectEqual(bt2, b2[N - 1], `broadcast from a private root ${tag}`);
    const a = Array.from({ length: N }, (_, r) => values('float32', n * N, r, seed++));
    const aout = make('float32', new Array(n * N).fill(0));
    await expectPath('in place', `allToAll ${tag}`, () => pg.allToAll(aout, put(1, a[me])).wait());
    expectEqual(aout, a.flatMap((row) => row.slice(me * n, (me + 1) * n)), `allToAll ${tag}`);
  }
}

async function main(): Promise<void> {
  const world = await initProcessGroup({ timeoutMs: 30_000 });
  const N = world.size;
  // the group's first collective probes cross-memory attach
  await world.allReduce(make('float32', [1]), 'sum');
  const cma = world.crossMemory;
  if (CMA_ON && cma !== true) {
    if (cmaAllowed()) throw new Error(`cross-memory attach is unavailable (crossMemory ${cma}) on a kernel without a seccomp filter or a Yama ptrace_scope above 1`);
    process.stderr.write(`collective_rank: cross-memory attach is denied here (crossMemory ${cma}): expecting the slots\n`);
  }
  if (!CMA_ON && cma === true) throw new Error('crossMemory is true with KESTREL_DIST_CMA=0 or on MPI');
  EXPECT_CMA = CMA_ON && cma === true;
  const huge = Number(process.env.COLLECTIVE_HUGE ?? 0);
  let seed = 1;
  for (const dtype of DTYPES) {
    const piece = 16 << 10; // KESTREL_DIST_SLOT_BYTES = 64 KiB in the test: sizes around a float32 piece cross it
    const sizes = [1, 7, 33, 257, piece / 2 + 3, dtype === 'float32' ? piece + 1 : 0].filter((s) => s > 0);
    for (const n of sizes) await suite(world, dtype, n, seed++);
  }
  if (huge) await hugeAllReduce(world, huge);
  await chunkedReductions(world);
  await sharedSuite(world);

  // async handle: the collective runs on a worker thread while this thread computes
  const x = make('float32', values('float32', 4099, world.rank, 99));
  const work = world.allReduce(x, 'sum');
  const busy = k.matmul(k.ones([64, 64]), k.ones([64, 64])).sum().item();
  await work.wait();
  if (!work.isCompleted() || busy !== 64 * 64 * 64) throw new Error('async allReduce: handle not completed or the overlapped compute is wrong');
  expectReduced(x, Array.from({ length: N }, (_, r) => values('float32', 4099, r, 99)), 'sum', 'async allReduce');

  // a subgroup of the first and last rank; the others get null and sit it out
  const members = [...new Set([0, N - 1])];
  const sub = await world.newGroup(members);
  if ((sub !== null) !== members.includes(world.rank)) throw new Error(`newGroup: membership of rank ${world.rank} is wrong`);
  if (sub) {
    const v = Array.from({ length: sub.size }, (_, r) => values('float32', 33, members[r], 7));
    const t = make('float32', v[sub.rank]);
    await sub.allReduce(t, 'sum');
    expectReduced(t, v, 'sum', `subgroup [${members}] allReduce`);
    sub.destroy();
  }
  await world.barrier();
  world.destroy();
  process.stdout.write(JSON.stringify({ rank: world.rank, checks }) + '\n');
}

main().catch((e: Error) => {
  process.stderr.write(`collective_rank: ${e.message}\n`);
  process.exit(1);
});
