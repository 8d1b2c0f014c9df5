// The collective suite (collective_suite.ts) on the MPI transport under MPICH's mpirun, 1-4 ranks.
import { collectiveTests } from './collective_suite.js';

collectiveTests('mpich');
