// Every collective (allReduce sum/avg/max/min, reduceScatter, broadcast, allGather, allToAll,
// send/recv, barrier, a subgroup, an async handle) on every carried dtype and odd sizes, with 1-4
// rank processes on the shared-memory transport, bit for bit (collective_suite.ts).
import { collectiveTests } from './collective_suite.js';

collectiveTests('shm');
