// A rank that misbehaves on purpose (FAULT=kill|hang|absent|throw|mismatch on rank FAULT_RANK) while the
// others run an allReduce and report, on stdout, the error they got and how long it took. Started
// by test/dist/ranks.ts (shared memory) or by mpirun (the MPI transport; no 'absent' there).
import * as k from '../../src/index.js';
import { rankFromEnv } from '../../src/dist/env.js';
import { initProcessGroup } from '../../src/dist/init.js';

const rank = rankFromEnv().rank;
const faulty = rank === Number(process.env.FAULT_RANK);
const fault = process.env.FAULT;
const timeoutMs = Number(process.env.TIMEOUT_MS ?? 3000);

async function main(): Promise<void> {
  if (faulty && fault === 'absent') return; // never joins the rendezvous
  let since = Date.now(); // the fault's moment: start-up, then the end of the first allReduce
  try {
    const world = await initProcessGroup({ timeoutMs });
    const x = k.ones([1000], { backend: 'cpu' });
    await world.allReduce(x); // everyone meets once, so the faulty rank is known to be running
    since = Date.now();
    if (faulty && fault === 'kill') process.kill(process.pid, 'SIGKILL');
    if (faulty && fault === 'hang') await new Promise((r) => setTimeout(r, timeoutMs + 2500)); // alive but absent past the others' timeout
    if (faulty && fault === 'throw') throw new Error('a deliberate failure in rank ' + rank);
    if (faulty && fault === 'mismatch') await world.allGather(k.zeros([3000], { backend: 'cpu' }), x); // the others allReduce
    else await world.allReduce(x);
    process.stdout.write(JSON.stringify({ ok: true }) + '\n');
  } catch (e) {
    if (faulty) throw e;
    process.stdout.write(JSON.stringify({ error: (e as Error).message, ms: Date.now() - since }) + '\n');
  }
}

await main();
