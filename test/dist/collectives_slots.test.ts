// The collective suite on the shared-memory transport with cross-memory attach off
// (KESTREL_DIST_CMA=0): private buffers go through the slots, copied in and out in pieces, as on a
// machine whose seccomp profile or Yama setting denies process_vm_readv.
import { collectiveTests } from './collective_suite.js';

collectiveTests('shm', true);
